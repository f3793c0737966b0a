"""Charting device-rate numerics: from about one record per monitor per second to one charted
value per parameter per patient-minute, with how many seconds were valid.

The rules are data (CHANNELS): from them come both the Flink SQL the screening job runs in the JVM
(`valid_sql`, `chart_sql`) and the pandas computation (`chart_frame`) that tests hold it to.

- A second's value is *valid* for charting when it is present and none of its channel's artefact
  conditions holds: ECG leads off for the heart rate; probe off, a signal quality index below
  SPO2_MIN_QUALITY_PCT or a reading of 0 for SpO2 (what most oximeters send while the probe is
  off). Impossible values never get here: the record is dead-lettered (`wardflow.range`).
- The charted value is the median of the minute's valid seconds (linear interpolation between
  the middle two of an even count), so a short motion artefact that the device did not flag moves
  it little; it is charted only when at least `min_valid_s` seconds were valid. Intermittent
  channels (a cuff pressure, a temperature) need one reading.

Basis: artefact sources as described by Drew et al., PLoS One 2014;9(10):e110274 (ECG leads off
and SpO2 artefact among the commonest false ICU alarms) and Petterson et al., Anesth Analg
2007;105(6 Suppl):S78-84 (motion and pulse oximetry); the SQI cut-off, the valid-seconds minimum
and the median are wardflow's choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

CHART_INTERVAL_S = 60
# The exact median in the JVM (udfs/java_decode.MEDIAN_SOURCE), registered by the job under this
# name: Flink's PERCENTILE gives the same values but keeps a state entry per distinct value.
MEDIAN_FUNCTION = "wf_median"
SPO2_MIN_QUALITY_PCT = 50


@dataclass(frozen=True)
class Artefact:
    """A condition under which a channel's value at that second is not charted: `column` is
    true (`op` "is_true"), or compares with `value` ("<", "<=")."""

    name: str
    column: str
    op: str
    value: float | None = None

    def sql(self) -> str:
        if self.op == "is_true":
            return f"COALESCE({self.column}, FALSE)"
        return f"COALESCE({self.column} {self.op} {self.value!r}, FALSE)"

    def mask(self, df: pd.DataFrame) -> npt.NDArray[np.bool_]:
        col = df[self.column]
        if self.op == "is_true":
            return np.asarray(col.fillna(False).astype(bool))
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            hit = x < self.value if self.op == "<" else x <= self.value
        return np.asarray(hit & ~np.isnan(x))


@dataclass(frozen=True)
class Channel:
    """A parameter of `vitals.device.v1` charted under the same name in the screened state."""

    param: str
    min_valid_s: int
    artefacts: tuple[Artefact, ...] = ()

    @property
    def valid_s(self) -> str:
        return f"{self.param}_valid_s"


LEADS_OFF = Artefact("ecg_leads_off", "ecg_leads_off", "is_true")
PROBE_OFF = Artefact("spo2_probe_off", "spo2_probe_off", "is_true")
LOW_QUALITY = Artefact("spo2_low_quality", "spo2_signal_quality_pct", "<", SPO2_MIN_QUALITY_PCT)
SPO2_ZERO = Artefact("spo2_zero", "spo2_pct", "<=", 0.0)
CONTINUOUS_MIN_VALID_S = 20  # a third of the minute

CHANNELS: tuple[Channel, ...] = (
    Channel("heart_rate_bpm", CONTINUOUS_MIN_VALID_S, (LEADS_OFF,)),
    Channel("spo2_pct", CONTINUOUS_MIN_VALID_S, (PROBE_OFF, LOW_QUALITY, SPO2_ZERO)),
    Channel("resp_rate_per_min", CONTINUOUS_MIN_VALID_S),
    Channel("sbp_mmhg", 1),
    Channel("dbp_mmhg", 1),
    Channel("map_mmhg", 1),
    Channel("temp_c", 1),
)
CHANNEL_PARAMS = tuple(c.param for c in CHANNELS)


def valid_sql(channel: Channel) -> str:
    """SQL condition: this record's value of `channel` counts for the chart."""
    bad = " OR ".join(a.sql() for a in channel.artefacts)
    return f"{channel.param} IS NOT NULL" + (f" AND NOT ({bad})" if bad else "")


def chart_sql(source: str, rowtime: str) -> str:
    """Per patient and minute of `source` (accepted device records with rowtime `rowtime`): the
    median of each channel's valid seconds (null below its minimum), the valid-second counts and
    the minute's last device, bed and source offset. Window aggregation in the JVM (two-phase)."""
    aggs = []
    for c in CHANNELS:
        v = valid_sql(c)
        aggs.append(f"{MEDIAN_FUNCTION}(CASE WHEN {v} THEN {c.param} END) AS m_{c.param}")
        aggs.append(f"CAST(COUNT(CASE WHEN {v} THEN 1 END) AS INT) AS {c.valid_s}")
    charted = ", ".join(
        f"CAST(CASE WHEN {c.valid_s} >= {c.min_valid_s} THEN m_{c.param} END AS FLOAT) AS {c.param}"
        f", {c.valid_s}"
        for c in CHANNELS
    )
    iso = "'yyyy-MM-dd''T''HH:mm'"
    window = f"TUMBLE(TABLE {source}, DESCRIPTOR({rowtime}), INTERVAL '{CHART_INTERVAL_S}' SECOND)"
    return f"""
    SELECT CONCAT(patient_token, '@', DATE_FORMAT(window_start, {iso})) AS chart_id,
           patient_token, facility_id, unit_id, bed_id, device_id,
           window_start AS minute_start, window_time AS event_time, records, {charted},
           source_partition, source_offset
    FROM (
      SELECT patient_token, window_start, window_end, window_time,
             LAST_VALUE(facility_id) AS facility_id, LAST_VALUE(unit_id) AS unit_id,
             LAST_VALUE(bed_id) AS bed_id, LAST_VALUE(device_id) AS device_id,
             CAST(COUNT(*) AS INT) AS records, {", ".join(aggs)},
             LAST_VALUE(kafka_partition) AS source_partition,
             LAST_VALUE(kafka_offset) AS source_offset
      FROM TABLE({window})
      GROUP BY patient_token, window_start, window_end, window_time)"""


def valid_mask(channel: Channel, df: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Which rows of `df` (device records) count for `channel`'s chart."""
    ok = df[channel.param].notna().to_numpy()
    for a in channel.artefacts:
        ok &= ~a.mask(df)
    return np.asarray(ok)


def chart_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The reference computation: `df` holds accepted device records (schema columns, event_time
    as UTC datetimes) in arrival order; one row per patient-minute like `chart_sql`."""
    d = df.copy()
    ms = (d["event_time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    d["minute_start"] = pd.to_datetime(
        (ms // (CHART_INTERVAL_S * 1000)) * CHART_INTERVAL_S * 1000, unit="ms", utc=True
    )
    for c in CHANNELS:
        # as the topic carries them: Avro float (32 bits), widened exactly
        as_sent = d[c.param].astype("float32").astype("float64")
        d[f"v_{c.param}"] = as_sent.where(valid_mask(c, d))
    g = d.groupby(["patient_token", "minute_start"], sort=True)
    out = g.agg(
        facility_id=("facility_id", "last"),
        unit_id=("unit_id", "last"),
        bed_id=("bed_id", "last"),
        device_id=("device_id", "last"),
        records=("event_time", "size"),
    )
    for c in CHANNELS:
        col = g[f"v_{c.param}"]
        n = col.count()
        out[c.valid_s] = n.astype("int64")
        median = col.median().astype("float32").astype("float64")
        out[c.param] = median.where(n >= c.min_valid_s)
    out = out.reset_index()
    out["event_time"] = out["minute_start"] + pd.Timedelta(milliseconds=CHART_INTERVAL_S * 1000 - 1)
    return out
