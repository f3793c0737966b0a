"""Dashboards as code: grafana/specs.py → Grafana 11 dashboard JSON with grafana-foundation-sdk,
for the official ClickHouse datasource plugin (grafana-clickhouse-datasource, v4 query model),
plus the provisioning files that load them.

    python -m grafana.build           # write grafana/dashboards/*.json and provisioning/
    python -m grafana.build --check   # exit 1 if the committed JSON is not what the code makes
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import barchart, bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.builders.dashboard import (
    ConstantVariable,
    QueryVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.dashboard import Dashboard as DashboardBuilder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from grafana.specs import DASHBOARDS, Dashboard, Panel

HERE = Path(__file__).resolve().parent
OUT = HERE
PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE = DataSourceRef(type_val=PLUGIN, uid="wardflow-clickhouse")
DEFAULT_DATABASE = "wardflow"
FORMAT = {"timeseries": 0, "table": 1}  # the plugin's Format enum: TIMESERIES 0, TABLE 1
NEUTRAL = "blue"  # a stat's colour where its value has no good or bad


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL query of the ClickHouse plugin (its CHSqlQuery)."""

    def __init__(self, sql: str, time_series: bool, ref_id: str = "A") -> None:
        self.sql = sql
        self.time_series = time_series
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "editorType": "sql",
            "queryType": "timeSeries" if self.time_series else "table",
            "format": FORMAT["timeseries" if self.time_series else "table"],
            "rawSql": self.sql,
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, sql: str, time_series: bool) -> None:
        self._query = ClickHouseQuery(sql, time_series)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def panel_id(d: Dashboard, p: Panel) -> int:
    """Stable across edits that do not rename the panel's key."""
    return int(hashlib.sha1(f"{d.uid}/{p.key}".encode()).hexdigest()[:6], 16)


def _steps(steps: tuple[tuple[float | None, str], ...]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def _panel(d: Dashboard, p: Panel) -> Any:
    builder: Any
    if p.kind == "stat":
        builder = stat.Panel()
    elif p.kind == "table":
        builder = table.Panel()
    elif p.kind == "timeseries":
        builder = timeseries.Panel()
    elif p.kind == "barchart":
        builder = barchart.Panel().x_field(p.columns[0])
    else:
        builder = bargauge.Panel()
    builder = (
        builder.id(panel_id(d, p))
        .title(p.title)
        .datasource(DATASOURCE)
        .with_target(ClickHouseQueryBuilder(p.sql, p.kind == "timeseries"))
        .span(p.width)
        .height(p.height)
    )
    if p.unit:
        builder = builder.unit(p.unit)
    if p.description:
        builder = builder.description(p.description)
    if p.time_from:
        builder = builder.time_from(p.time_from)
    if p.kind in ("stat", "bargauge"):  # Grafana's default steps: red from 80, whatever it is
        builder = builder.thresholds(_steps(p.thresholds or ((None, NEUTRAL),)))
        if p.thresholds_for:  # every other column neutral
            neutral = _steps(((None, NEUTRAL),)).build().to_json()
            builder = builder.override_by_regexp(
                f"^(?!{p.thresholds_for}$).*$",
                [DynamicConfigValue(id_val="thresholds", value=neutral)],
            )
    if p.bar_value:  # one bar per row, named by the first column
        builder = builder.reduce_options(
            ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields(f"/^{p.bar_value}$/")
        ).display_name(f"${{__data.fields.{p.columns[0]}}}")
    for name, unit in p.field_units:
        builder = builder.override_by_name(name, [DynamicConfigValue(id_val="unit", value=unit)])
    for regexp in p.dashed:  # thin dashed lines: interval bounds, thresholds
        builder = builder.override_by_regexp(
            regexp,
            [
                DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [6, 4]}
                ),
                DynamicConfigValue(id_val="custom.lineWidth", value=1),
            ],
        )
    return builder


def dashboard(d: Dashboard) -> dict[str, Any]:
    b = (
        DashboardBuilder(d.title)
        .uid(d.uid)
        .description(d.description)
        .tags(list(d.tags))
        .timezone("browser")
        .time(d.time_from, "now")
        .refresh(d.refresh)
        .with_variable(
            ConstantVariable("db")
            .label("ClickHouse database")
            .value(DEFAULT_DATABASE)
            .description("The wardflow database; change it in the JSON to point elsewhere.")
        )
    )
    for v in d.variables:
        q = (
            QueryVariable(v.name)
            .label(v.label)
            .datasource(DATASOURCE)
            .query(v.sql)
            .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(VariableSort.ALPHABETICAL_ASC if v.by_name else VariableSort.DISABLED)
            .allow_custom_value(v.custom)
        )
        if v.default is not None:
            q = q.current(VariableOption(selected=True, text=v.default, value=v.default))
        if v.multi:
            q = (
                q.multi(True)
                .include_all(True)
                .current(VariableOption(selected=True, text="All", value="$__all"))
            )
        b = b.with_variable(q)
    for p in d.panels:
        b = b.with_panel(_panel(d, p))
    built: dict[str, Any] = json.loads(json.dumps(b.build(), cls=JSONEncoder))
    return built


DATASOURCE_YAML = f"""# Generated by python -m grafana.build.
# Grafana provisioning for the ClickHouse datasource the wardflow dashboards query
# (plugin {PLUGIN}, v4). Grafana needs a ClickHouse server: set CLICKHOUSE_HOST,
# CLICKHOUSE_PORT (native protocol), CLICKHOUSE_USER and CLICKHOUSE_PASSWORD in Grafana's
# environment, and give that user read-only access to the {DEFAULT_DATABASE} database.
apiVersion: 1
datasources:
  - name: wardflow ClickHouse
    uid: {DATASOURCE.uid}
    type: {PLUGIN}
    editable: false
    jsonData:
      host: $CLICKHOUSE_HOST
      port: $CLICKHOUSE_PORT
      protocol: native
      username: $CLICKHOUSE_USER
      defaultDatabase: {DEFAULT_DATABASE}
    secureJsonData:
      password: $CLICKHOUSE_PASSWORD
"""

DASHBOARDS_YAML = """# Generated by python -m grafana.build.
# Loads grafana/dashboards/*.json, mounted in Grafana at the path below.
apiVersion: 1
providers:
  - name: wardflow
    folder: wardflow
    type: file
    disableDeletion: true
    allowUiUpdates: false
    options:
      path: /var/lib/grafana/dashboards/wardflow
"""


def render_all() -> dict[str, str]:
    """Generated file (relative to grafana/) → its text."""
    files = {
        f"dashboards/{d.uid}.json": json.dumps(dashboard(d), indent=2, sort_keys=True) + "\n"
        for d in DASHBOARDS
    }
    files["provisioning/datasources/wardflow-clickhouse.yaml"] = DATASOURCE_YAML
    files["provisioning/dashboards/wardflow.yaml"] = DASHBOARDS_YAML
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    files = render_all()
    if a.check:
        stale = []
        for name, text in files.items():
            path = a.out / name
            old = path.read_text() if path.exists() else ""
            if old != text:
                stale.append(name)
                sys.stdout.writelines(
                    difflib.unified_diff(old.splitlines(True), text.splitlines(True), name, name)
                )
        made = {str(a.out / n) for n in files}
        extra = {str(p) for p in a.out.glob("dashboards/*.json")} - made
        for name in sorted(stale) + sorted(extra):
            print(f"stale: {name} (run python -m grafana.build)", file=sys.stderr)
        return 1 if stale or extra else 0
    for name, text in files.items():
        path = a.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files)} files under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
