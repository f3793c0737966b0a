// Charting device-rate numerics in the JVM: udfs/device.py's rules as a Flink process table
// function, one virtual processor per patient. udfs/java_decode.py compiles it into the UDF jar
// and fills in the output type (udfs.device.CHART_WINDOW), the channels and the interval.
//
// Called as (udfs.device.chart_sql)
//   wf_device_chart(input => TABLE t PARTITION BY patient_token, on_time => DESCRIPTOR(rowtime),
//                   uid => 'device-chart')
// on rows of udfs.device.chart_input_sql (read by name): accepted device records, each channel's
// value null unless it counts for the chart. A record waits in list state until the watermark
// passes the end of its patient's minute, packed into a byte array: its minute's start, Kafka
// position, metadata version and a float per channel, NaN for none (24 + 4 per channel bytes).
// Facility, unit, bed and device are kept once per change in the patient's value state (`meta`),
// not per record; Flink hashes a value state on every call, so it holds only that, the minute
// phase and the minute whose timer was set last. Then the minute yields one row: its start, the
// last record's (arrival order) facility, unit, bed, device and Kafka position, the record count
// and per channel the median of the values (Median.of) and how many there were. Neither state
// has a TTL: the minute's timer empties them. A patient's minutes start at CRC-32(token) mod the
// interval seconds past the UTC minute (udfs.device.chart_phase_s), which spreads the monitors'
// minute ends over the whole minute instead of one instant.
package io.wardflow.udf;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.zip.CRC32;
import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.api.dataview.ListView;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint("@OUTPUT@"))
public class DeviceChart extends ProcessTableFunction<Row> {
  static final String[] CHANNELS = {@CHANNELS@};
  static final long INTERVAL_MS = @INTERVAL_S@ * 1000L;

  static final int META = 4; // facility, unit, bed, device
  static final int META_AT = 8 + 4 + 8; // a packed record: start, partition, offset, version, values
  static final int ENTRY = META_AT + 4 + 4 * CHANNELS.length;

  /** What charting keeps per patient besides its records. */
  public static class Patient {
    public String[] meta; // metadata versions, META strings each; the last is the newest
    public Long phaseMs; // the patient's minute phase, once computed
    public Long armedMs; // the minute whose end timer was registered last
  }

  /** One pending record, unpacked. */
  static final class Second {
    long startMs; // its patient's minute
    int partition;
    long offset;
    int meta; // its metadata version
    final float[] values = new float[CHANNELS.length]; // NaN: absent or not valid
    byte[] packed;
  }

  public void eval(
      Context ctx,
      @StateHint(name = "patient", ttl = "0 ms") Patient p,
      @StateHint(name = "seconds", ttl = "0 ms") ListView<byte[]> seconds,
      @ArgumentHint(
              name = "input",
              value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.REQUIRE_ON_TIME})
          Row input)
      throws Exception {
    long t = ctx.timeContext(Long.class).time();
    if (p.phaseMs == null) p.phaseMs = phaseMs(input.getFieldAs("patient_token"));
    long startMs = Math.floorDiv(t - p.phaseMs, INTERVAL_MS) * INTERVAL_MS + p.phaseMs;
    byte[] packed = new byte[ENTRY];
    ByteBuffer b = ByteBuffer.wrap(packed);
    b.putLong(startMs);
    b.putInt(input.<Integer>getFieldAs("kafka_partition"));
    b.putLong(input.<Long>getFieldAs("kafka_offset"));
    b.putInt(metaVersion(p, input));
    for (String c : CHANNELS) {
      Float v = input.getFieldAs(c);
      b.putFloat(v == null ? Float.NaN : v);
    }
    seconds.add(packed);
    // Every record of a minute would register the same timer; the first one does. A record of
    // another pending minute (out of order) registers again, which Flink deduplicates.
    if (p.armedMs == null || p.armedMs != startMs) {
      ctx.timeContext(Long.class).registerOnTime(startMs + INTERVAL_MS - 1);
      p.armedMs = startMs;
    }
  }

  public void onTimer(OnTimerContext ctx, Patient p, ListView<byte[]> seconds) throws Exception {
    long now = ctx.timeContext(Long.class).time();
    TreeMap<Long, List<Second>> due = new TreeMap<>();
    List<Second> later = new ArrayList<>();
    for (byte[] packed : seconds.get()) {
      ByteBuffer b = ByteBuffer.wrap(packed);
      Second s = new Second();
      s.startMs = b.getLong();
      s.partition = b.getInt();
      s.offset = b.getLong();
      s.meta = b.getInt();
      for (int i = 0; i < CHANNELS.length; i++) s.values[i] = b.getFloat();
      s.packed = packed;
      if (s.startMs + INTERVAL_MS - 1 <= now) {
        due.computeIfAbsent(s.startMs, k -> new ArrayList<>()).add(s);
      } else {
        later.add(s);
      }
    }
    for (Map.Entry<Long, List<Second>> minute : due.entrySet()) {
      collect(chart(minute.getKey(), minute.getValue(), p.meta));
    }
    if (later.isEmpty()) {
      ctx.clearAllState();
      return;
    }
    seconds.clear();
    seconds.addAll(keep(p, later));
  }

  /** The metadata version of `input` in `p.meta`: the newest, or a new one when it differs. */
  private static int metaVersion(Patient p, Row input) {
    int n = p.meta == null ? 0 : p.meta.length / META;
    String facility = input.getFieldAs("facility_id");
    String unit = input.getFieldAs("unit_id");
    String bed = input.getFieldAs("bed_id");
    String device = input.getFieldAs("device_id");
    if (n > 0) {
      int at = (n - 1) * META;
      if (Objects.equals(p.meta[at], facility)
          && Objects.equals(p.meta[at + 1], unit)
          && Objects.equals(p.meta[at + 2], bed)
          && Objects.equals(p.meta[at + 3], device)) {
        return n - 1;
      }
    }
    String[] grown = p.meta == null ? new String[META] : Arrays.copyOf(p.meta, (n + 1) * META);
    grown[n * META] = facility;
    grown[n * META + 1] = unit;
    grown[n * META + 2] = bed;
    grown[n * META + 3] = device;
    p.meta = grown;
    return n;
  }

  /** The records of `later` (arrival order kept) with `p.meta` cut to the metadata versions
   * they use and the newest (the next record compares with it), renumbered. */
  private static List<byte[]> keep(Patient p, List<Second> later) {
    int versions = p.meta.length / META;
    int[] renumber = new int[versions];
    Arrays.fill(renumber, -1);
    for (Second s : later) renumber[s.meta] = 0;
    renumber[versions - 1] = 0;
    int kept = 0;
    String[] meta = new String[versions * META];
    for (int v = 0; v < versions; v++) {
      if (renumber[v] < 0) continue;
      System.arraycopy(p.meta, v * META, meta, kept * META, META);
      renumber[v] = kept++;
    }
    p.meta = Arrays.copyOf(meta, kept * META);
    List<byte[]> out = new ArrayList<>(later.size());
    for (Second s : later) {
      byte[] packed = s.packed;
      if (renumber[s.meta] != s.meta) {
        packed = packed.clone(); // state objects are not changed in place
        ByteBuffer.wrap(packed).putInt(META_AT, renumber[s.meta]);
      }
      out.add(packed);
    }
    return out;
  }

  /** The minute's row (udfs.device.CHART_WINDOW) from its records in arrival order. */
  private static Row chart(long startMs, List<Second> minute, String[] meta) {
    Second last = minute.get(minute.size() - 1);
    Row r = Row.withNames();
    r.setField(
        "minute_start",
        LocalDateTime.ofEpochSecond(
            Math.floorDiv(startMs, 1000L), (int) Math.floorMod(startMs, 1000L) * 1_000_000,
            ZoneOffset.UTC));
    r.setField("facility_id", meta[last.meta * META]);
    r.setField("unit_id", meta[last.meta * META + 1]);
    r.setField("bed_id", meta[last.meta * META + 2]);
    r.setField("device_id", meta[last.meta * META + 3]);
    r.setField("records", minute.size());
    float[] values = new float[minute.size()];
    for (int i = 0; i < CHANNELS.length; i++) {
      int n = 0;
      for (Second s : minute) {
        if (!Float.isNaN(s.values[i])) values[n++] = s.values[i];
      }
      r.setField("median_" + CHANNELS[i], Median.of(values, n));
      r.setField(CHANNELS[i] + "_valid_s", n);
    }
    r.setField("source_partition", last.partition);
    r.setField("source_offset", last.offset);
    return r;
  }

  /** How far past the UTC minute the patient's minutes start (udfs.device.chart_phase_s); a
   * minute holding `timeMs` starts at floor((timeMs - phase) / interval) * interval + phase
   * (udfs.device.chart_start_ms). */
  static long phaseMs(String patientToken) {
    CRC32 crc = new CRC32();
    crc.update(patientToken.getBytes(StandardCharsets.UTF_8));
    return crc.getValue() % (INTERVAL_MS / 1000) * 1000;
  }
}
