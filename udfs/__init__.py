"""Pure, typed functions (NEWS2, SIRS, qSOFA, partial SOFA, the alert lifecycle, the bed-census
state machine, record decoding, batch scoring) with the thin PyFlink wrappers the jobs register
(`flink*.py`), and the model registry the Flink workers read. Unit-tested without a JVM."""
