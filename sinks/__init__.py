"""ClickHouse side of wardflow: migrations, the client, and the Kafka → ClickHouse loader."""
