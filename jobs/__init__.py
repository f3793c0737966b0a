"""The Flink jobs: each module directly in this folder is one job, `build(t_env, settings,
sources, sinks)` with the same `run`/`main` (`runtime/job.py`). `runtime/` is what they run on
(environment, Kafka tables, command line, Kafka client helpers), `screening/` the screening
job's rules and model SQL, `feeds/` the processes that feed their input topics (HL7 v2 MLLP
gateway, FHIR bundle drop, PhysioNet and MIMIC-IV replays, multi-site ADT generator)."""
