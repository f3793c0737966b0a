"""How wardflow is run. `local/`: the services script (Kafka, Redis, connector jars) and the
demos that drive the whole stack on this machine."""
