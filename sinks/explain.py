"""Why did this alert fire? `python -m sinks.explain ALERT_ID [--database DB]`

Prints the alert's rule and version, its lifecycle, the evidence (every valid value with the time
it was measured) and the screened states it was computed from, each with the input record's
Kafka topic, partition and offset (ClickHouse view `alert_audit`, migration 0004)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobs.screening.rules import RULES
from schemas.settings import Settings
from sinks import clickhouse


def explain(client: Any, db: str, alert_id: str) -> str:
    q = client.query
    steps = q(
        f"""SELECT sequence, action, severity, event_time, hit_count, resolve_reason, rule_id,
                   rule_version, patient_token, facility_id, unit_id, score_name, score_value,
                   evidence_json
            FROM {db}.alert_events FINAL WHERE alert_id = %(a)s ORDER BY sequence""",
        parameters={"a": alert_id},
    ).result_rows
    if not steps:
        raise LookupError(f"no alert {alert_id} in {db}.alert_events")
    *_, rule_id, version, patient, facility, unit, score_name, score, evidence = steps[0]
    rule = next((r for r in RULES if r.rule_id == rule_id and r.version == version), None)
    lines = [
        f"alert {alert_id}: rule {rule_id} v{version} for patient {patient} in {facility}/{unit}",
        f"  {score_name} = {score} when raised",
    ]
    if rule is not None:
        how = f"pattern {rule.pattern} within {rule.within_h} h" if rule.pattern else "one state"
        lines.append(f"  rule: {how} where {' '.join(rule.condition.split())}")
    lines.append("lifecycle:")
    for seq, action, sev, at, hits, why, *_ in steps:
        extra = f", {why}" if why else ""
        lines.append(f"  {seq}. {at:%Y-%m-%d %H:%M} {action} ({sev}, {hits} hits{extra})")
    lines.append("evidence when raised (value, measured at):")
    for name, value in json.loads(evidence).items():
        if not name.endswith("_measured_time"):
            lines.append(
                f"  {name} = {value} ({json.loads(evidence).get(name + '_measured_time')})"
            )
    lines.append("inputs (screened states; * = first or completing record of the pattern):")
    for seq, record, kind, at, end, news2, sirs, qsofa, sofa, topic, part, offset in q(
        f"""SELECT sequence, input_record_id, input_kind, input_time, pattern_end, news2_score,
                   sirs_count, qsofa_score, sofa_partial_score, source_topic, source_partition,
                   source_offset
            FROM {db}.alert_audit WHERE alert_id = %(a)s ORDER BY sequence, input_time""",
        parameters={"a": alert_id},
    ).result_rows:
        mark = "*" if end else " "
        lines.append(
            f"  {mark} step {seq} {at:%Y-%m-%d %H:%M} {kind:<6} NEWS2 {news2} SIRS {sirs} "
            f"qSOFA {qsofa} SOFA {sofa}  {topic}[{part}]@{offset}  {record}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("alert_id")
    ap.add_argument("--database", default=None)
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    client = clickhouse.connect(settings.clickhouse_url)
    print(explain(client, a.database or settings.clickhouse_database, a.alert_id))


if __name__ == "__main__":
    main()
