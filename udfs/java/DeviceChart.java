// Charting device-rate numerics in the JVM: udfs/device.py's rules as a Flink process table
// function, one virtual processor per patient. udfs/java_decode.py compiles it into the UDF jar
// and fills in the output type (udfs.device.CHART_WINDOW), the channels and the interval.
//
// Called as (udfs.device.chart_sql)
//   wf_device_chart(input => TABLE t PARTITION BY patient_token, on_time => DESCRIPTOR(rowtime),
//                   uid => 'device-chart')
// on rows of udfs.device.chart_input_sql (read by name): accepted device records, each channel's
// value null unless it counts for the chart. A record's values wait in list state until the
// watermark passes the end of its patient's minute (a start time and a float per channel, NaN
// for none: about 60 bytes a second on the heap); the minute's last record's facility, unit,
// bed, device and Kafka position (arrival order) wait in map state, one entry per pending
// minute. Then the minute yields one row: its start, those, the record count and per channel
// the median of the values (Median.of) and how many there were. A patient's minutes
// start at CRC-32(token) mod the interval seconds past the UTC minute (udfs.device.chart_phase_s),
// which spreads the monitors' minute ends over the whole minute instead of one instant.
package io.wardflow.udf;

import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.CRC32;
import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.api.dataview.ListView;
import org.apache.flink.table.api.dataview.MapView;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint("@OUTPUT@"))
public class DeviceChart extends ProcessTableFunction<Row> {
  static final String[] CHANNELS = {@CHANNELS@};
  static final long INTERVAL_MS = @INTERVAL_S@ * 1000L;

  /** A device record's values as charting keeps them until its minute ends. */
  public static class Second {
    public long startMs; // its patient's minute
    public float[] values; // per channel; NaN: absent or not valid (valid values are finite)
  }

  /** What a pending minute's row takes from its last record (arrival order). */
  public static class Last {
    public String facility;
    public String unit;
    public String bed;
    public String device;
    public int partition;
    public long offset;
  }

  public void eval(
      Context ctx,
      @StateHint(name = "seconds") ListView<Second> seconds,
      @StateHint(name = "last") MapView<Long, Last> lastOf,
      @ArgumentHint(
              name = "input",
              value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.REQUIRE_ON_TIME})
          Row input)
      throws Exception {
    long t = ctx.timeContext(Long.class).time();
    Second s = new Second();
    s.startMs = startMs(input.getFieldAs("patient_token"), t);
    s.values = new float[CHANNELS.length];
    for (int i = 0; i < CHANNELS.length; i++) {
      Float v = input.getFieldAs(CHANNELS[i]);
      s.values[i] = v == null ? Float.NaN : v;
    }
    seconds.add(s);
    Last last = new Last();
    last.facility = input.getFieldAs("facility_id");
    last.unit = input.getFieldAs("unit_id");
    last.bed = input.getFieldAs("bed_id");
    last.device = input.getFieldAs("device_id");
    last.partition = input.<Integer>getFieldAs("kafka_partition");
    last.offset = input.<Long>getFieldAs("kafka_offset");
    lastOf.put(s.startMs, last);
    ctx.timeContext(Long.class).registerOnTime(s.startMs + INTERVAL_MS - 1);
  }

  public void onTimer(OnTimerContext ctx, ListView<Second> seconds, MapView<Long, Last> lastOf)
      throws Exception {
    long now = ctx.timeContext(Long.class).time();
    TreeMap<Long, List<Second>> due = new TreeMap<>();
    List<Second> later = new ArrayList<>();
    for (Second s : seconds.get()) {
      if (s.startMs + INTERVAL_MS - 1 <= now) {
        due.computeIfAbsent(s.startMs, k -> new ArrayList<>()).add(s);
      } else {
        later.add(s);
      }
    }
    for (Map.Entry<Long, List<Second>> minute : due.entrySet()) {
      collect(chart(minute.getKey(), minute.getValue(), lastOf.get(minute.getKey())));
      lastOf.remove(minute.getKey());
    }
    seconds.clear();
    if (!later.isEmpty()) seconds.addAll(later);
  }

  /** The minute's row (udfs.device.CHART_WINDOW) from its records in arrival order. */
  private static Row chart(long startMs, List<Second> minute, Last last) {
    Row r = Row.withNames();
    r.setField(
        "minute_start",
        LocalDateTime.ofEpochSecond(
            Math.floorDiv(startMs, 1000L), (int) Math.floorMod(startMs, 1000L) * 1_000_000,
            ZoneOffset.UTC));
    r.setField("facility_id", last.facility);
    r.setField("unit_id", last.unit);
    r.setField("bed_id", last.bed);
    r.setField("device_id", last.device);
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

  /** Start of the patient's minute that holds `timeMs` (udfs.device.chart_start_ms). */
  static long startMs(String patientToken, long timeMs) {
    CRC32 crc = new CRC32();
    crc.update(patientToken.getBytes(StandardCharsets.UTF_8));
    long phaseMs = crc.getValue() % (INTERVAL_MS / 1000) * 1000;
    return Math.floorDiv(timeMs - phaseMs, INTERVAL_MS) * INTERVAL_MS + phaseMs;
  }
}
