"""ClickHouse side of wardflow: numbered migrations, the client, the Kafka → ClickHouse loader,
dimensions, a query command and the alert explainer."""
