"""Grafana dashboards as code (grafana-foundation-sdk) over ClickHouse, their provisioning, the
ClickHouse plugin's macro expansion, previews, and the seeded warehouse they are tested on."""
