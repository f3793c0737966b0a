"""Decode + validate in the JVM: a Flink table function per registry schema, generated as Java
from the schema and compiled once into a jar (javac from the JDK; Avro from the Flink jars),
with the charting median (`Median`, an aggregate function), the screening job's quarantine check
(`Quarantine`), and the bed census's keyed placement (`CensusPlacement`, a process table
function) and capacity lookup (`UnitBeds`), the screening job's 6-hour extremes
(`TrailingExtreme`) and run rules (`RisingRun`, `PersistentRun`, `PairRun`: aggregates of
accumulate-only OVER windows), the catalog job's hour rows (`StayHours`, a process table
function), and the screening and catalog jobs' stay rule (`StayDischarge`, an aggregate of a
processing-time OVER window: jobs/runtime/stays.py), written as Java in udfs/java/ (row types
filled in from schemas.rows).

Each generated function `io.wardflow.udf.Decode<Schema>` has the contract of the Python
reference `udfs.vitals.decode_record` (kept as the test oracle): `eval(value BYTES,
record_time_ms BIGINT)`, or with the Kafka timestamp as read (`TIMESTAMP_LTZ(3)`, which spares a
per-record conversion in SQL), yields one row, `schemas.rows.decoded(schema, decoded_fields)` — the
rejection (reason_code, reason), then every field but the timestamps (then, for a schema that
refuses values alone, `refused_codes`, `refused_reasons`: schemas.rows.REFUSED). A record is
accepted when it decodes with the writer schema and consumes every byte, every value lies inside
the field's `wardflow.range` / `wardflow.enum`, no required string is empty, and the Kafka record
timestamp is its `schemas.codec.record_time` (the event time, or a later time it was recorded);
otherwise the row carries the first reason, in the codec's order, with the codec's reason codes
(schemas.codec). Where the schema refuses values alone (`Schema.refused_alone`: vitals.device,
vitals.observation, labs.result; schemas.codec, "Refused values"), a measurement that is NaN or
out of its range is refused alone instead, as `schemas.codec.check` does: the accepted row has
it null, and `refused_codes` (each refused value's `value_out_of_range` / `value_not_a_number`)
and `refused_reasons` (each one's field, value and range), arrays in schema order, say so. A
measurement that remains keeps the record (`Schema.measurements`: a ranged value in range, or a
present `"wardflow.measurement": true` field such as an observation's ACVPU); a record with none
left is rejected (`out_of_range` / `not_a_number`, the first refused value's code, a reason
naming each: `schemas.codec.refused_whole`); in a record kept, a field refused with a partner
refused (`Schema.refused_with`: an observation's `on_supplemental_o2` with its `fio2_fraction`)
is null too, its refusal after the others. A clean record costs what it did: the same
comparisons per value, a flag set (also by a measurement without a range), and no allocation
(the refusal stays null; the row is the same one `GenericRowData`); the refusal itself (its
reasons, nulling the value) is a helper method, so `decode()` stays about its size before
(HotSpot compiles no method over 8000 bytes of bytecode). The checks are generated from the same
schema fields as the codec's, so a range changes in one place. As the codec does, a payload
that does not decode with the current revision is read with each earlier revision of the schema
as the writer schema, newest first (schemas.avro, "Schema evolution"), resolved into the
current one.

The jar is content-addressed (`wardflow-udfs-<hash>.jar` under `settings.udf_jar_dir`): a change
of a schema or of this generator builds a new one; an existing one is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from schemas import load_schema, topics
from schemas.avro import AvroField, Schema, earlier_revisions
from schemas.capacity import ALL_UNITS
from schemas.rows import CENSUS_PLACED, REJECTION, STAY_HOUR, decoded, measured
from schemas.settings import Settings
from udfs import census
from udfs.device import CHANNELS, CHART_INTERVAL_S, CHART_WINDOW
from udfs.lifecycle import LIFECYCLE_OUT, QUIET_H, SEVERITY_RANK

PACKAGE = "io.wardflow.udf"
GENERATOR_VERSION = "8"
# The topics wardflow's jobs read from outside producers, whose records are decoded in the job.
INGESTED = (
    topics.VITALS_DEVICE,
    topics.VITALS_OBSERVATION,
    topics.LABS_RESULT,
    topics.ADT_EVENT,
    topics.ALERT_RESPONSE,
    # read by the model monitor (jobs/model_monitor.py)
    topics.SEPSIS_SCREEN,
    topics.SEPSIS_SCORE,
    topics.MODEL_SCORE,
    topics.LABEL_OUTCOME,
)
_JAVA_TYPES = {
    "string": "String",
    "float": "Float",
    "double": "Double",
    "int": "Integer",
    "long": "Long",
    "boolean": "Boolean",
    "bytes": "byte[]",
}


def decoded_fields(schema: Schema) -> tuple[AvroField, ...]:
    """Every field but timestamps: the Kafka record timestamp (checked equal) is the rowtime."""
    return tuple(f for f in schema.fields if f.logical is None)


def class_name(schema: Schema) -> str:
    return "Decode" + "".join(p.capitalize() for p in schema.name.replace(".", "_").split("_"))


def function_class(schema_name: str, *, lenient: bool = False) -> str:
    """The fully qualified Java class of a registry schema's decode function (`lenient`: the
    variant that keeps a refused record's values, java_source)."""
    return f"{PACKAGE}.{class_name(load_schema(schema_name))}{'Lenient' if lenient else ''}"


def _java_string(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Java string literal for these


def _value(i: int, f: AvroField) -> str:
    """Java expression of field i of GenericRecord `r`, as Flink's internal data structure
    (strings stay the UTF-8 bytes Avro read: no decoding to a Java String and back)."""
    got = f"r.get({i})"
    if f.base == "string":
        return f"str({got})"
    if f.base == "bytes":
        return f"({got} == null ? null : toBytes({got}))"
    return f"({_JAVA_TYPES[f.base]}) {got}"


def _checks(
    schema: Schema, alone: frozenset[str] = frozenset(), measured: frozenset[str] = frozenset()
) -> str:
    """The codec's validation (schemas.codec.check), field by field in schema order: a failed
    check of a field in `alone` (the schema's `refused_alone`, but for the lenient variant)
    refuses that value (null in the row, named in the refusal), any other rejects the record;
    a value of `measured` (the schema's `measurements`, none for the lenient variant) present
    and passing its checks sets `kept`."""
    out = []
    for i, f in enumerate(schema.fields):
        v = f"v{i}"
        lines = []
        refused = f.name in alone
        if f.base == "string" and not f.nullable:
            lines.append(
                f'if (((Utf8) {v}).getByteLength() == 0) return reject("missing_field", '
                f'"{f.name} is empty");'
            )
        if f.value_range is not None and f.accepted_range is not None:
            # a float field's value is a Float (float32) and its bounds as float32 (AvroField)
            lo, hi = f.accepted_range
            num = f"((Number) {v}).doubleValue()"
            nan = f'"{f.name} is NaN"'
            shown = f.value_range
            outside = (
                f'"{f.name}=" + g({num}) + " outside [" + g({shown[0]!r}) + ", " '
                f'+ g({shown[1]!r}) + "]"'
            )
            inside = f"{lo!r} <= {num} && {num} <= {hi!r}"
            real = f.base in ("float", "double")
            if refused:  # NaN fails the comparison too; `refuse` tells the two apart
                lines.append(
                    f"if (!({inside})) refusal = refuse(refusal, r, {i}, "
                    f'"{f.name}", {num}, {shown[0]!r}, {shown[1]!r});\n'
                    f"        else kept = true;"
                )
            else:
                if real:
                    lines.append(f'if (Double.isNaN({num})) return reject("not_a_number", {nan});')
                lines.append(f'if (!({inside})) return reject("out_of_range", {outside});')
        if f.allowed is not None:
            allowed = ", ".join(_java_string(a) for a in f.allowed)
            lines.append(
                f"if (!java.util.Arrays.asList({allowed}).contains({v}.toString())) "
                f'return reject("bad_enum", "{f.name}=\'" + {v} + "\' not in {list(f.allowed)}");'
            )
        if f.name in measured and not refused:  # a measurement without a range, present
            lines.append("kept = true;")
        if lines:
            body = "\n        ".join(lines)
            out.append(
                f"Object {v} = r.get({i});\n      if ({v} != null) {{\n        {body}\n      }}"
            )
    return "\n      ".join(out)


def java_source(schema: Schema, *, lenient: bool = False) -> str:
    """The Java source of `schema`'s decode function. The `lenient` variant
    (`Decode<Schema>Lenient`, for the data-quality monitors of jobs/data_quality.py) refuses no
    value alone: it rejects a record for every failed check, as the codec's `validate` does (a
    value out of range or NaN rejects its record even where the strict variant refuses the
    value alone; its `refused_codes` and `refused_reasons` are always null), and keeps the
    values of a record that decoded and failed a check (a temperature of 98.6 refused as out of
    range still carries 98.6 and its unit, so the monitors see the unit conversion; the strict
    variant would hand them null); a record that does not decode has none."""
    fields = decoded_fields(schema)
    row = decoded(schema, (f.name for f in fields))
    row_type = row.flink_sql()
    index = {f.name: i for i, f in enumerate(schema.fields)}
    event_time, recorded_time = index.get("event_time"), index.get("recorded_time")
    values = ", ".join(
        [_value(index[f.name], f) for f in fields]
        + (  # schemas.rows.MEASURED_TIME: the record's own event_time
            [f"(r.get({event_time}) == null ? null : "
             f"TimestampData.fromEpochMillis((Long) r.get({event_time})))"]
            if measured(schema) and event_time is not None
            else []
        )
    )  # fmt: skip
    # the record timestamp is schemas.codec.record_time: event_time, or a later recorded_time
    later = (
        ""
        if recorded_time is None
        else f"""
        Object rt = r.get({recorded_time});
        if (rt != null && ((Long) rt).longValue() > known) {{
          known = ((Long) rt).longValue();
          which = "recorded_time ";
        }}"""
    )
    ts_check = (
        ""
        if event_time is None
        else f"""
      Object et = r.get({event_time});
      if (recordTimeMs != null && et != null) {{
        long known = ((Long) et).longValue();
        String which = "event_time ";{later}
        if (known != recordTimeMs) {{
          return reject("timestamp_mismatch",
              which + known + " != Kafka record timestamp " + recordTimeMs);
        }}
      }}"""
    )
    nulls = ", ".join("null" for _ in row.columns[len(REJECTION) :])
    # schemas.codec, "Refused values": the values refused alone (none in the lenient variant)
    alone = frozenset() if lenient else schema.refused_alone_names
    keeping = frozenset() if lenient else schema.measurement_names
    refusing, refusal = "", ""
    if schema.refused_alone:  # the row ends with schemas.rows.REFUSED
        values += (
            ", null, null"
            if lenient
            else (
                ', refusal == null ? null : refusal.list(refusal.codes, "value_")'
                ', refusal == null ? null : refusal.list(refusal.reasons, "")'
            )
        )
    refuse = ""
    if alone:  # locals: nothing allocated for a record without a refused value
        refusing = """Refusal refusal = null;  // the values refused alone, if any
    boolean kept = false;  // a measurement remains (schemas.avro.Schema.measurements)
    """
        refusal = """
      if (refusal != null && !kept) return reject(refusal.codes.get(0), refusal.whole());"""
        # Schema.refused_with: a partner refused (present, now null) refuses the field present
        for f, partner in schema.refused_with:
            i, p = index[f.name], index[partner.name]
            refusal += f"""
      if (v{p} != null && r.get({p}) == null && r.get({i}) != null) {{
        refusal = refuseWith(refusal, r, {i}, "{f.name}", "{partner.name}",
            Double.isNaN(((Number) v{p}).doubleValue()));
      }}"""
        # the slow path off decode(), whose bytecode HotSpot compiles only under 8000 bytes
        refuse = """

  /** Value `v` of field `i` refused alone (schemas.codec, "Refused values"): null in `r` and
   * added to the refusal, which the first one allocates. Outside decode() to keep it small. */
  private static Refusal refuse(
      Refusal got, GenericRecord r, int i, String field, double v, double lo, double hi) {
    boolean nan = Double.isNaN(v);
    String why =
        nan ? field + " is NaN" : field + "=" + g(v) + " outside [" + g(lo) + ", " + g(hi) + "]";
    r.put(i, null);
    Refusal out = got == null ? new Refusal() : got;
    out.codes.add(nan ? "not_a_number" : "out_of_range");
    out.reasons.add(why);
    return out;
  }

  /** Field `i` refused with its partner `with`, refused (schemas.avro.Schema.refused_with):
   * null in `r`, its refusal the partner's code. */
  private static Refusal refuseWith(
      Refusal got, GenericRecord r, int i, String field, String with, boolean nan) {
    r.put(i, null);
    got.codes.add(nan ? "not_a_number" : "out_of_range");
    got.reasons.add(field + " refused with " + with);
    return got;
  }

  /** The refused values of a record, in schema order: each one's check's code and reason. */
  private static final class Refusal {
    final ArrayList<String> codes = new ArrayList<>(2);
    final ArrayList<String> reasons = new ArrayList<>(2);

    /** `texts`, each after `prefix`, as an ARRAY<STRING> (schemas.rows.REFUSED). */
    ArrayData list(ArrayList<String> texts, String prefix) {
      Object[] out = new Object[texts.size()];
      for (int k = 0; k < out.length; k++) out[k] = StringData.fromString(prefix + texts.get(k));
      return new GenericArrayData(out);
    }

    /** The reason of a record left with no measurement (schemas.codec.refused_whole). */
    String whole() {
      if (reasons.size() == 1) return reasons.get(0);
      StringBuilder b = new StringBuilder();
      for (int k = 0; k < reasons.size(); k++) {
        if (k > 0) b.append("; ");
        b.append(reasons.get(k)).append(" (").append(codes.get(k)).append(")");
      }
      return b.toString();
    }
  }"""
    name = class_name(schema) + ("Lenient" if lenient else "")
    # lenient: the record read last, whose values a failed check keeps
    held = "\n  private transient GenericRecord held;" if lenient else ""
    hold = "held = r;\n    " if lenient else ""
    release = "held = null;\n    " if lenient else ""
    why = "StringData.fromString(code), StringData.fromString(reason)"
    empty = 'return reject("undecodable", "empty payload");'
    reject = (
        f"""private RowData reject(String code, String reason) {{
    GenericRecord r = held;
    if (r == null) return GenericRowData.of({why}, {nulls});
    return GenericRowData.of({why}, {values});"""
        if lenient
        else f"""private static RowData reject(String code, String reason) {{
    return GenericRowData.of({why}, {nulls});"""
    )
    earlier = ", ".join(_java_string(json.dumps(e.raw)) for e in earlier_revisions(schema.name))
    return f"""// Generated by udfs/java_decode.py from schemas/{schema.name}.avsc: do not edit.
package {PACKAGE};

import java.math.BigDecimal;
import java.math.MathContext;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.util.Utf8;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.GenericArrayData;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.TableFunction;

@FunctionHint(output = @DataTypeHint(value = {_java_string(row_type)}, bridgedTo = RowData.class))
public class {name} extends TableFunction<RowData> {{
  private static final String SCHEMA = {_java_string(json.dumps(schema.raw))};
  // Earlier revisions of the schema, newest first (schemas/history/).
  private static final String[] EARLIER = {{{earlier}}};
  private transient GenericDatumReader<GenericRecord> reader;
  private transient GenericDatumReader<GenericRecord>[] earlierReaders;
  private transient BinaryDecoder decoder;{held}

  @Override
  @SuppressWarnings("unchecked")
  public void open(FunctionContext context) {{
    Schema current = new Schema.Parser().parse(SCHEMA);
    reader = new GenericDatumReader<>(current);
    earlierReaders = new GenericDatumReader[EARLIER.length];
    for (int i = 0; i < EARLIER.length; i++) {{
      earlierReaders[i] = new GenericDatumReader<>(new Schema.Parser().parse(EARLIER[i]), current);
    }}
  }}

  public void eval(byte[] payload, Long recordTimeMs) {{
    collect(decode(payload, recordTimeMs));
  }}

  /** The Kafka record timestamp as the source's `TIMESTAMP_LTZ(3)` (no per-record string
   * round trip to epoch milliseconds in SQL). */
  public void eval(
      byte[] payload, @DataTypeHint("TIMESTAMP_LTZ(3)") java.time.Instant recordTime) {{
    collect(decode(payload, recordTime == null ? null : recordTime.toEpochMilli()));
  }}

  private RowData decode(byte[] payload, Long recordTimeMs) {{
    {release}if (payload == null || payload.length == 0) {empty}
    GenericRecord r = null;
    String failure = null;
    try {{
      decoder = DecoderFactory.get().binaryDecoder(payload, decoder);
      r = reader.read(null, decoder);
      if (!decoder.isEnd()) {{
        int left = 0;
        while (!decoder.isEnd()) {{ decoder.readFixed(new byte[1]); left++; }}
        r = null;
        failure = left + " trailing bytes after record";
      }}
    }} catch (Exception | StackOverflowError | OutOfMemoryError e) {{
      decoder = null;  // a failed read leaves bytes in the decoder's buffer (FLINK-34474)
      String msg = e.getClass().getSimpleName() + ": " + e.getMessage();
      failure = msg.length() > 500 ? msg.substring(0, 500) : msg;
    }}
    if (r == null) r = readEarlier(payload);
    if (r == null) return reject("undecodable", failure);
    {hold}{refusing}{_checks(schema, alone, keeping)}{refusal}{ts_check}
    return GenericRowData.of(null, null, {values});
  }}

  /** The payload read with an earlier revision as the writer schema, or null if none reads it
   * whole (as schemas.codec.decode). */
  private GenericRecord readEarlier(byte[] payload) {{
    for (GenericDatumReader<GenericRecord> old : earlierReaders) {{
      try {{
        BinaryDecoder d = DecoderFactory.get().binaryDecoder(payload, null);
        GenericRecord o = old.read(null, d);
        if (d.isEnd()) return o;
      }} catch (Exception | StackOverflowError | OutOfMemoryError e) {{
        // not written with this revision
      }}
    }}
    return null;
  }}

  {reject}
  }}

  private static StringData str(Object o) {{
    if (o == null) return null;
    Utf8 u = (Utf8) o;
    return StringData.fromBytes(u.getBytes(), 0, u.getByteLength());
  }}

  private static byte[] toBytes(Object o) {{
    ByteBuffer b = ((ByteBuffer) o).duplicate();
    byte[] out = new byte[b.remaining()];
    b.get(out);
    return out;
  }}

  /** Six significant digits without trailing zeros, as Python's format(v, "g") in the codec. */
  private static String g(double v) {{
    if (Double.isInfinite(v)) return v > 0 ? "inf" : "-inf";
    String s = new BigDecimal(v).round(new MathContext(6)).stripTrailingZeros().toPlainString();
    return s.equals("-0") ? "-0" : s;
  }}{refuse}
}}
"""


JAVA_DIR = Path(__file__).resolve().parent / "java"
CENSUS_PLACEMENT_CLASS = f"{PACKAGE}.CensusPlacement"
UNIT_BEDS_CLASS = f"{PACKAGE}.UnitBeds"
DEVICE_CHART_CLASS = f"{PACKAGE}.DeviceChart"
ALERT_LIFECYCLE_CLASS = f"{PACKAGE}.AlertLifecycle"
TRAILING_EXTREME_CLASS = f"{PACKAGE}.TrailingExtreme"
RISING_RUN_CLASS = f"{PACKAGE}.RisingRun"
PERSISTENT_RUN_CLASS = f"{PACKAGE}.PersistentRun"
PAIR_RUN_CLASS = f"{PACKAGE}.PairRun"
STAY_HOURS_CLASS = f"{PACKAGE}.StayHours"
STAY_DISCHARGE_CLASS = f"{PACKAGE}.StayDischarge"
STAY_START_CLASS = f"{PACKAGE}.StayStart"
# Hand-written classes in JAVA_DIR and what their placeholders stand for.
HAND_WRITTEN = {
    "CensusPlacement": {
        "@OUTPUT@": CENSUS_PLACED.flink_sql(),
        "@HISTORY@": str(census.HISTORY),
        "@RETENTION_MS@": f"{census.RETENTION_MS}L",
        "@STALE@": json.dumps(census.STALE),  # a JSON string of ASCII text is a Java literal
        "@STALE_REASON@": json.dumps(census.STALE_REASON),
    },
    "DeviceChart": {
        "@OUTPUT@": CHART_WINDOW.flink_sql(),
        "@CHANNELS@": ", ".join(f'"{c.param}"' for c in CHANNELS),
        "@INTERVAL_S@": str(CHART_INTERVAL_S),
    },
    "AlertLifecycle": {
        "@OUTPUT@": LIFECYCLE_OUT.flink_sql(),
        "@QUIET_MS@": str(QUIET_H * 3_600_000),
        "@SEVERITY_RANKS@": " ".join(
            f'SEVERITY_RANK.put("{s}", {r});' for s, r in SEVERITY_RANK.items()
        ),
    },
    "StayHours": {"@OUTPUT@": STAY_HOUR.flink_sql()},
    "UnitBeds": {"@ALL_UNITS@": ALL_UNITS},
    "TrailingExtreme": {},
    "RuleRuns": {},
    "RulePeers": {},
    "EventTimers": {},
    "RisingRun": {},
    "PersistentRun": {},
    "PairRun": {},
    "StayDischarge": {"@STALE@": json.dumps(census.STALE)},
    "StayStart": {},
}


def hand_written_source(name: str) -> str:
    src = (JAVA_DIR / f"{name}.java").read_text()
    for placeholder, value in HAND_WRITTEN[name].items():
        if placeholder not in src:
            raise ValueError(f"{name}.java has no {placeholder}")
        src = src.replace(placeholder, value)
    return src


MEDIAN_CLASS = f"{PACKAGE}.Median"
# The per-minute charting aggregate (udfs/device.py): the exact median of a group's non-null
# FLOATs, as a double (the mean of the middle two of an even count, as pandas computes it).
# The accumulator is the values themselves (at most one per second of the window), so a
# patient-minute costs a small float array in state, where Flink's PERCENTILE keeps a map view
# (a state entry per distinct value). `merge` makes it two-phase (local + global aggregation).
MEDIAN_SOURCE = f"""// Generated by udfs/java_decode.py: do not edit.
package {PACKAGE};

import java.util.Arrays;
import org.apache.flink.table.functions.AggregateFunction;

public class Median extends AggregateFunction<Double, Median.Acc> {{
  public static class Acc {{
    public float[] values = new float[0];
    public int n = 0;
  }}

  @Override
  public Acc createAccumulator() {{
    return new Acc();
  }}

  public void accumulate(Acc acc, Float v) {{
    if (v == null) return;
    if (acc.n == acc.values.length) acc.values = Arrays.copyOf(acc.values, Math.max(8, 2 * acc.n));
    acc.values[acc.n++] = v;
  }}

  public void merge(Acc acc, Iterable<Acc> others) {{
    for (Acc o : others) {{
      for (int i = 0; i < o.n; i++) accumulate(acc, o.values[i]);
    }}
  }}

  @Override
  public Double getValue(Acc acc) {{
    return of(acc.values, acc.n);
  }}

  /** The median of values[0..n) (the mean of the middle two of an even count); null if n = 0. */
  public static Double of(float[] values, int n) {{
    if (n == 0) return null;
    float[] sorted = Arrays.copyOf(values, n);
    Arrays.sort(sorted);
    int m = n / 2;
    if (n % 2 == 1) return (double) sorted[m];
    return ((double) sorted[m - 1] + (double) sorted[m]) / 2.0;
  }}
}}
"""

QUARANTINE_CLASS = f"{PACKAGE}.Quarantine"
# The screening job's per-record quarantine check (udfs/quarantine.py writes the TSV it reads):
# `Quarantine(tsv_path, source_topic, facility_id, unit_id, event_time)` is the record's note (a
# JSON string, udfs.quarantine.record_note) when a quarantine of the source (the unit's, or the
# facility's `*`; of one parameter, or of every one) covers that event time, else NULL. The note
# lists the parameters ignored first (`*`: every one), then each covering quarantine's own note,
# in the file's order; the job nulls only the listed parameters (udfs.quarantine.ignores_sql). A
# line of six cells (a file written before parameters) is every parameter's. The file is read
# once per JVM and path, and again when its modification time or size changes, checked at most
# every RELOAD_MS; a reader sees the registry's old file or its new one (renamed into place),
# never half. With no entry for the topic's facility in the file (open or cleared) the check is
# one clock read and up to two map lookups; with some, a loop over that facility's open
# quarantines and those of its cleared ones that end after the record's time (kept latest end
# first, so a record of now meets none of the facility's history; a replay of an old period
# meets the quarantines cleared since, which the file keeps for it); strings stay
# Flink's binary strings (no decoding per record), and a record covered by one quarantine gets
# that quarantine's note as read (built once per file read); one covered by several gets the
# note of that set, built once per file read and set, looked up by a mask of their positions
# (no string is built per record).
QUARANTINE_SOURCE = f"""// Generated by udfs/java_decode.py: do not edit.
package {PACKAGE};

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

public class Quarantine extends ScalarFunction {{
  static final long RELOAD_MS = 2000;
  static final String EVERY = "*";

  static final class Entry {{
    final StringData unit;
    final String parameter;  // `*`: every parameter
    final long sinceMs;
    final long untilMs;  // -1: open
    final String note;  // this quarantine's own note
    final StringData alone;  // the record's note when this quarantine alone covers it

    Entry(StringData unit, String parameter, long sinceMs, long untilMs, String note) {{
      this.unit = unit;
      this.parameter = parameter;
      this.sinceMs = sinceMs;
      this.untilMs = untilMs;
      this.note = note;
      List<Entry> self = new ArrayList<>();
      self.add(this);
      this.alone = combined(self);
    }}

    boolean covers(StringData recordUnit, long t) {{
      return (unit.equals(WHOLE) || unit.equals(recordUnit)) && sinceMs <= t
          && (untilMs < 0 || t < untilMs);
    }}
  }}

  /** udfs.quarantine.record_note: the parameters (sorted, once each), then the notes. */
  static StringData combined(List<Entry> covering) {{
    TreeSet<String> names = new TreeSet<>();
    for (Entry e : covering) names.add(e.parameter);
    StringBuilder b = new StringBuilder("{{\\"parameters\\":[");
    String sep = "";
    for (String n : names) {{
      b.append(sep).append('"').append(n).append('"');
      sep = ",";
    }}
    b.append("],\\"quarantines\\":[");
    sep = "";
    for (Entry e : covering) {{
      b.append(sep).append(e.note);
      sep = ",";
    }}
    return StringData.fromString(b.append("]}}").toString());
  }}

  /** A facility's quarantines of one topic in one read, in the file's order. */
  static final class Facility {{
    final List<Entry> entries = new ArrayList<>();
    /** Positions of the open quarantines. */
    int[] open;
    /** Positions of the cleared ones, latest end first: a record at t meets those ending after. */
    int[] cleared;

    void index() {{
      List<Integer> o = new ArrayList<>();
      List<Integer> c = new ArrayList<>();
      for (int i = 0; i < entries.size(); i++) (entries.get(i).untilMs < 0 ? o : c).add(i);
      c.sort((a, b) -> Long.compare(entries.get(b).untilMs, entries.get(a).untilMs));
      open = o.stream().mapToInt(Integer::intValue).toArray();
      cleared = c.stream().mapToInt(Integer::intValue).toArray();
    }}
    /**
     * The notes of records covered by several quarantines at once, by which: a Long mask of
     * their positions while all are below 64, else a BitSet of them (never equal to a Long).
     */
    final Map<Object, StringData> several = new ConcurrentHashMap<>();

    StringData note(Object which) {{
      StringData n = several.get(which);
      if (n != null) return n;
      BitSet bits = which instanceof Long
          ? BitSet.valueOf(new long[] {{(Long) which}}) : (BitSet) which;
      List<Entry> covering = new ArrayList<>();
      for (int i = bits.nextSetBit(0); i >= 0; i = bits.nextSetBit(i + 1)) {{
        covering.add(entries.get(i));
      }}
      n = combined(covering);
      StringData was = several.putIfAbsent(which, n);
      return was != null ? was : n;
    }}
  }}

  /** One read of the registry file: topic -> facility -> its quarantines. */
  static final class Snapshot {{
    final long mtime;
    final long size;
    final Map<StringData, Map<StringData, Facility>> byTopic;

    Snapshot(long mtime, long size, Map<StringData, Map<StringData, Facility>> byTopic) {{
      this.mtime = mtime;
      this.size = size;
      this.byTopic = byTopic;
    }}
  }}

  private static final Map<String, Snapshot> SNAPSHOTS = new ConcurrentHashMap<>();
  private static final StringData WHOLE = StringData.fromString("*");
  private transient StringData path;
  private transient Snapshot snapshot;
  private transient long checkedMs = Long.MIN_VALUE;

  /** A TSV line's cells (topic, facility, unit, [parameter,] since, until, note) as an entry. */
  static Entry entry(String[] c) {{
    if (c.length == 6) {{  // written before parameters: every parameter's
      return new Entry(StringData.fromString(c[2]), EVERY, Long.parseLong(c[3]),
          Long.parseLong(c[4]), c[5]);
    }}
    if (c.length < 7) return null;
    return new Entry(StringData.fromString(c[2]), c[3], Long.parseLong(c[4]),
        Long.parseLong(c[5]), c[6]);
  }}

  static Snapshot read(String file) {{
    Path p = Paths.get(file);
    try {{
      if (!Files.exists(p)) return new Snapshot(-1, -1, Collections.emptyMap());
      long mtime = Files.getLastModifiedTime(p).toMillis();
      long size = Files.size(p);
      Snapshot old = SNAPSHOTS.get(file);
      if (old != null && old.mtime == mtime && old.size == size) return old;
      Map<StringData, Map<StringData, Facility>> byTopic = new HashMap<>();
      for (String line : Files.readAllLines(p, StandardCharsets.UTF_8)) {{
        String[] c = line.split("\\t", 7);
        Entry e = entry(c);
        if (e == null) continue;
        byTopic.computeIfAbsent(StringData.fromString(c[0]), k -> new HashMap<>())
            .computeIfAbsent(StringData.fromString(c[1]), k -> new Facility()).entries.add(e);
      }}
      for (Map<StringData, Facility> fs : byTopic.values()) {{
        for (Facility f : fs.values()) f.index();
      }}
      Snapshot s = new Snapshot(mtime, size, byTopic);
      SNAPSHOTS.put(file, s);
      return s;
    }} catch (Exception e) {{
      // A registry that cannot be read quarantines nothing new; the last good read stays.
      Snapshot old = SNAPSHOTS.get(file);
      return old != null ? old : new Snapshot(-1, -1, Collections.emptyMap());
    }}
  }}

  /** Not deterministic (the registry changes), so the planner never evaluates it twice. */
  @Override
  public boolean isDeterministic() {{
    return false;
  }}

  public @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData eval(
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData file,
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData topic,
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData facility,
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData unit,
      @DataTypeHint(value = "TIMESTAMP_LTZ(3)", bridgedTo = Long.class) Long eventTimeMs) {{
    if (file == null || topic == null || facility == null || eventTimeMs == null) return null;
    long now = System.currentTimeMillis();
    if (snapshot == null || !file.equals(path) || now - checkedMs >= RELOAD_MS) {{
      path = file;
      snapshot = read(file.toString());
      checkedMs = now;
    }}
    if (snapshot.byTopic.isEmpty()) return null;
    Map<StringData, Facility> byFacility = snapshot.byTopic.get(topic);
    if (byFacility == null) return null;
    Facility at = byFacility.get(facility);
    if (at == null) return null;
    List<Entry> entries = at.entries;
    long t = eventTimeMs;
    int first = -1;
    int count = 0;
    long mask = 0;
    BitSet beyond = null;  // positions from 64 on (a long history of the facility's quarantines)
    // the open quarantines, then the cleared ones that end after t (latest end first: a record
    // of now meets none of the facility's history)
    int[] open = at.open;
    int[] cleared = at.cleared;
    for (int k = 0; k < open.length + cleared.length; k++) {{
      int i = k < open.length ? open[k] : cleared[k - open.length];
      Entry e = entries.get(i);
      if (k >= open.length && e.untilMs <= t) break;
      if (!e.covers(unit, t)) continue;
      if (first < 0) first = i;
      count++;
      if (i < 64) {{
        mask |= 1L << i;
      }} else {{
        if (beyond == null) beyond = new BitSet();
        beyond.set(i);
      }}
    }}
    if (first < 0) return null;
    if (count == 1) return entries.get(first).alone;
    if (beyond == null) return at.note(mask);
    beyond.or(BitSet.valueOf(new long[] {{mask}}));  // positions met in any order
    return at.note(beyond);
  }}
}}
"""


def _sources(schema_names: Iterable[str]) -> dict[str, str]:
    schemas = [load_schema(n) for n in sorted(set(schema_names))]
    decoders = {class_name(s): java_source(s) for s in schemas}
    decoders |= {class_name(s) + "Lenient": java_source(s, lenient=True) for s in schemas}
    hand = {name: hand_written_source(name) for name in HAND_WRITTEN}
    return {**decoders, "Median": MEDIAN_SOURCE, "Quarantine": QUARANTINE_SOURCE, **hand}


def _classpath(settings: Settings) -> list[Path]:
    import pyflink  # the PyFlink wheel carries the Flink API jars

    lib = Path(pyflink.__file__).resolve().parent / "lib"
    jars = sorted(lib.glob("flink-table-api-java-uber-*.jar")) + sorted(
        lib.glob("flink-dist-*.jar")
    )
    jars += sorted(settings.flink_jars_dir.glob("avro-*.jar"))
    if not any(j.name.startswith("avro-") for j in jars):
        raise FileNotFoundError(
            f"no Avro jar in {settings.flink_jars_dir}: run `deploy/local/services.sh fetch kafka`"
        )
    return jars


def runtime_jars(settings: Settings) -> list[Path]:
    """What the decode functions need at run time besides Flink: Avro and its Jackson."""
    names = ("avro-", "jackson-", "commons-compress-")
    return sorted(j for j in settings.flink_jars_dir.glob("*.jar") if j.name.startswith(names))


def decoder_jar(settings: Settings, schema_names: Iterable[str] | None = None) -> Path:
    """The jar of the decode functions of `schema_names` (default: the INGESTED topics'
    schemas), built here if not built yet."""
    names = schema_names or (t.schema_name for t in INGESTED)
    sources = _sources(names)
    digest = hashlib.sha256(GENERATOR_VERSION.encode())
    for name, src in sorted(sources.items()):
        digest.update(name.encode() + b"\0" + src.encode())
    jar = settings.udf_jar_dir / f"wardflow-udfs-{digest.hexdigest()[:12]}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar_tool:
        raise FileNotFoundError("building the JVM decode functions needs a JDK (javac and jar)")
    settings.udf_jar_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wardflow-udfs-") as tmp:
        src_dir, out_dir = Path(tmp, "src"), Path(tmp, "classes")
        pkg = src_dir.joinpath(*PACKAGE.split("."))
        pkg.mkdir(parents=True)
        out_dir.mkdir()
        for name, src in sources.items():
            (pkg / f"{name}.java").write_text(src)
        cp = os.pathsep.join(str(j) for j in _classpath(settings))
        files = [str(p) for p in sorted(pkg.glob("*.java"))]
        _run([javac, "--release", "11", "-nowarn", "-cp", cp, "-d", str(out_dir), *files])
        staged = jar.with_name(f".{jar.name}.{os.getpid()}")
        _run([jar_tool, "cf", str(staged), "-C", str(out_dir), "."])
        os.replace(staged, jar)  # atomic: a concurrent build writes the same bytes
    return jar


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed:\n{done.stdout}{done.stderr}")
