"""The sepsis screening job's parts: the rules compiled to Flink SQL and the model's SQL around
the scoring UDF."""
