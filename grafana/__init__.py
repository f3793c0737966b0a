"""Grafana dashboards as code (grafana-foundation-sdk) over ClickHouse: not built yet."""
