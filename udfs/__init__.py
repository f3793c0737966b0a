"""Pure, typed functions behind wardflow's Flink UDFs (unit-tested without a JVM)."""
