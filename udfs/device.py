"""Charting device-rate numerics: from about one record per monitor per second to one charted
value per parameter per patient-minute, with how many seconds were valid.

The rules are data (CHANNELS): from them come both what the screening job runs in the JVM (the
SQL of `chart_input_sql` and `chart_sql` around udfs/java/DeviceChart.java) and the pandas
computation (`chart_frame`) that tests hold it to.

- Each patient's minutes start at their own second of the UTC minute (`chart_phase_s`, from a
  CRC-32 of the token), so that a unit's or a hospital's monitors do not all close a minute at
  the same instant: with 15,000 beds on one clock, every state, score and rule evaluation of a
  minute arrived in one burst behind the watermark, and the last bed's alert waited for all the
  others (bench/device_rate.py). A patient's minutes are still consecutive and one minute long.

- A second's value is *valid* for charting when it is present and none of its channel's artefact
  conditions holds: ECG leads off for the heart rate; probe off, a signal quality index below
  SPO2_MIN_QUALITY_PCT or a reading of 0 for SpO2 (what most oximeters send while the probe is
  off). Impossible values never get here: the decoder refuses a value outside its
  `wardflow.range` alone (schemas.codec, "Refused values"; it arrives null, dead-lettered
  `value_out_of_range` beside the record, one letter per refused value), and rejects a record
  left with no value in range (its probe-off and leads-off flags qualify values, they measure
  nothing) or with an impossible signal quality (which qualifies SpO2, so it is never refused
  alone).
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

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from schemas.rows import Field, Row

CHART_INTERVAL_S = 60
# The JVM process table function that charts (udfs/java/DeviceChart.java), registered by the job
# under this name.
CHART_FUNCTION = "wf_device_chart"
# The exact median in the JVM (udfs/java_decode.MEDIAN_SOURCE; the charting function uses its
# `Median.of`), as an aggregate function registered under this name (jobs/data_quality.py):
# Flink's PERCENTILE gives the same values but keeps a state entry per distinct value.
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


def chart_phase_s(patient_token: str) -> int:
    """The second of the UTC minute at which `patient_token`'s charted minutes start:
    CRC-32 (zlib's, java.util.zip.CRC32's) of the token's UTF-8 bytes, modulo the interval."""
    return zlib.crc32(patient_token.encode("utf-8")) % CHART_INTERVAL_S


def chart_start_ms(patient_token: str, event_time_ms: int) -> int:
    """Start (epoch ms) of the patient's charted minute that holds `event_time_ms`."""
    phase_ms = chart_phase_s(patient_token) * 1000
    interval_ms = CHART_INTERVAL_S * 1000
    return (event_time_ms - phase_ms) // interval_ms * interval_ms + phase_ms


# What the charting function (udfs/java/DeviceChart.java) emits per patient-minute, after the
# partition key `patient_token` and before the framework's `rowtime` (the minute's last
# millisecond): `chart_sql` makes the charted topic's row of it.
CHART_WINDOW = Row(
    "chart_window",
    (
        Field("minute_start", "timestamp", "Start of the patient's charted minute."),
        Field("facility_id", "string", "Of the minute's last device record."),
        Field("unit_id", "string", "Of the minute's last device record."),
        Field("bed_id", "string", "Of the minute's last device record."),
        Field("device_id", "string", "Of the minute's last device record."),
        Field("records", "int", "Accepted device records of the minute."),
        *(
            f
            for c in CHANNELS
            for f in (
                Field(f"median_{c.param}", "double", "Median of the valid seconds' values."),
                Field(c.valid_s, "int", "Valid seconds of the minute."),
            )
        ),
        Field("source_partition", "int", "Kafka partition of the minute's last device record."),
        Field("source_offset", "long", "Kafka offset of the minute's last device record."),
    ),
    "A patient-minute of device numerics as the JVM charting function emits it.",
)
# The charting function's input columns besides the partition key and the time attribute.
CHART_INPUT = ("facility_id", "unit_id", "bed_id", "device_id", "kafka_partition", "kafka_offset")


def chart_input_sql(source: str, rowtime: str) -> str:
    """The charting function's input table: `source`'s accepted device records with each
    channel's value, null where not valid (`valid_sql`), and the event time as `rowtime`."""
    values = ", ".join(
        f"CASE WHEN {valid_sql(c)} THEN {c.param} END AS {c.param}" for c in CHANNELS
    )
    return f"""
    SELECT patient_token, {", ".join(CHART_INPUT)}, {values}, {rowtime} AS rowtime
    FROM {source}"""


def chart_sql(source: str) -> str:
    """Per patient-minute of `source` (`chart_input_sql`'s table, a view): the median of each
    channel's valid seconds (null below its minimum), the valid-second counts and the minute's
    last device, bed and source offset. A JVM process table function keyed by patient: a
    minute's records wait in list state until the watermark passes the minute's end, in each
    patient's own phase (`chart_phase_s`)."""
    charted = ", ".join(
        f"CAST(CASE WHEN {c.valid_s} >= {c.min_valid_s} THEN median_{c.param} END AS FLOAT)"
        f" AS {c.param}, {c.valid_s}"
        for c in CHANNELS
    )
    iso = "'yyyy-MM-dd''T''HH:mm:ss'"
    return f"""
    SELECT CONCAT(patient_token, '@', DATE_FORMAT(minute_start, {iso})) AS chart_id,
           patient_token, facility_id, unit_id, bed_id, device_id, minute_start,
           rowtime AS event_time, records, {charted}, source_partition, source_offset
    FROM TABLE({CHART_FUNCTION}(
      input => TABLE {source} PARTITION BY patient_token,
      on_time => DESCRIPTOR(rowtime),
      uid => 'device-chart'))"""


def valid_mask(channel: Channel, df: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Which rows of `df` (device records) count for `channel`'s chart."""
    ok = df[channel.param].notna().to_numpy()
    for a in channel.artefacts:
        ok &= ~a.mask(df)
    return np.asarray(ok)


def chart_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The reference computation: `df` holds accepted device records (schema columns, event_time
    as UTC datetimes) in arrival order; one row per patient-minute (`chart_start_ms`) like
    `chart_sql`."""
    d = df.copy()
    ms = (d["event_time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    interval_ms = CHART_INTERVAL_S * 1000
    phases = {t: chart_phase_s(t) * 1000 for t in d["patient_token"].unique()}
    phase_ms = d["patient_token"].map(phases).astype("int64")
    d["minute_start"] = pd.to_datetime(
        (ms - phase_ms) // interval_ms * interval_ms + phase_ms, unit="ms", utc=True
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
