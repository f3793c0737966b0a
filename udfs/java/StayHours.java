// The catalog job's hour rows (jobs/model_scoring.stay_hours_sql): each stay at each of its
// reported hours, as of exactly its first record's time plus the hour, as a process table
// function with one virtual processor per stay. udfs/java_decode.py compiles it into the UDF jar
// and writes schemas.rows.STAY_HOUR's Flink type into the output hint.
//
// Called as
//   wf_stay_hours(input => TABLE t PARTITION BY (patient_token, stay_seq),
//                 on_time => DESCRIPTOR(event_time), hours => '24,48', uid => 'stay-hours')
// on a stay's running rows (jobs/model_scoring.stay_running_sql, read by name: facility_id,
// unit_id, records, discharged and `base`, the running sums and extremes as one array), which an
// event-time OVER window emits in event-time order once the watermark passes them. `hours`: the
// hours as Python formats them (`format(h, "g")`), a label being the text and "h".
//
// The stay's latest row is kept; a row later than a due time means every row up to it has come,
// so the hour is emitted then from the row before; an hour with no row after it is emitted by
// its timer, once the watermark passes it. A stay with no vitals or lab record by then, or
// discharged by then, is not emitted. This replaces an event-time temporal join on a
// deduplicated versioned view of the running rows, which lost an hour whose next record came
// before the watermark passed it (the deduplication retracts the old version with the old
// version's own time, replacing it in the join's state; bench/catalog.py found most hour-24
// scores of a fast replay missing). After the last hour only the stay's first time and the
// count of hours stay, for the job's idle-state TTL (table.exec.state.ttl) to clear.
package io.wardflow.udf;

import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint("@OUTPUT@"))
public class StayHours extends ProcessTableFunction<Row> {

  /** One stay's state: its first time, the hours (the call's argument, which onTimer lacks),
   * how many of them are done, and the latest row's values (null once all are done). */
  public static class Stay {
    public Long firstMs;
    public String hours;
    public int done;
    public String facility;
    public String unit;
    public Long records;
    public Integer discharged;
    public Double[] base;
  }

  public void eval(
      Context ctx,
      @StateHint(name = "stay") Stay s,
      @ArgumentHint(
              name = "input",
              value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.REQUIRE_ON_TIME})
          Row input,
      @ArgumentHint(name = "hours") String hours) {
    TimeContext<Long> time = ctx.timeContext(Long.class);
    long t = time.time();
    if (s.firstMs == null) {
      s.firstMs = t;
      s.hours = hours;
    }
    String[] h = s.hours.split(",");
    if (s.done >= h.length) return;
    while (s.done < h.length && due(s, h[s.done]) < t) emit(s, h[s.done++]);
    if (s.done >= h.length) {
      forgetValues(s);
      return;
    }
    s.facility = input.getFieldAs("facility_id");
    s.unit = input.getFieldAs("unit_id");
    s.records = input.getFieldAs("records");
    s.discharged = input.getFieldAs("discharged");
    s.base = input.getFieldAs("base");
    time.registerOnTime("due", due(s, h[s.done])); // after t: accepted; replaces the last one
  }

  public void onTimer(OnTimerContext ctx, Stay s) {
    if (s.firstMs == null) return; // the stay's state expired (TTL) under a pending timer
    TimeContext<Long> time = ctx.timeContext(Long.class);
    Long watermark = time.currentWatermark();
    long now = Math.max(time.time(), watermark == null ? Long.MIN_VALUE : watermark);
    String[] h = s.hours.split(",");
    // Every row up to the watermark has come: each hour it passed is as of the latest row.
    while (s.done < h.length && due(s, h[s.done]) <= now) emit(s, h[s.done++]);
    if (s.done >= h.length) {
      forgetValues(s);
    } else {
      EventTimers.registerNoEarlierThanNext(time, "due", due(s, h[s.done]));
    }
  }

  private static long due(Stay s, String hour) {
    return s.firstMs + Math.round(Double.parseDouble(hour) * 3_600_000);
  }

  private void emit(Stay s, String hour) {
    if (s.records == null || s.records <= 0 || s.discharged == null || s.discharged != 0) return;
    collect(
        Row.of(
            s.firstMs,
            hour + "h",
            Double.parseDouble(hour),
            due(s, hour),
            s.facility,
            s.unit,
            s.base));
  }

  private static void forgetValues(Stay s) {
    s.facility = null;
    s.unit = null;
    s.records = null;
    s.discharged = null;
    s.base = null;
  }
}
