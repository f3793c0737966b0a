"""What every job runs on: the Flink environment, Kafka table DDL from the schemas, the one job
shape and command line, and Kafka client helpers."""
