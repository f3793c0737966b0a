// The largest (or smallest) value of a parameter over a trailing span of event time, as an
// aggregate of an accumulate-only OVER window (RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW).
// udfs/java_decode.py compiles it into the UDF jar; jobs/screening/scoring.feature_events_sql
// calls it for the model's 6-hour extremes:
//   wf_trailing_extreme(value, CAST(event_time AS TIMESTAMP(3)), span_ms, largest,
//                       measured_time, ends) OVER w
// `ends`: the row ends the patient's stay (a discharge): the values before it are the stay's,
// none of them an extreme of the next stay's rows (training's features are a stay's alone). A
// row measured at or before the discharge (a lab resulted after it, a reading at its instant)
// is the ended stay's and joins no extreme of the next: the deque is the ended stay's until the
// next stay's first row (measured after the discharge) empties it, so a row at the discharge's
// instant counts in it before or after the discharge in arrival order alike (the instant's
// rows are read after all of them are in).
//
// Same result as MAX (MIN) over RANGE BETWEEN INTERVAL span PRECEDING AND CURRENT ROW: the rows
// at or after (the current row's time - span), nulls ignored, rows of the same time all seen by
// each other (the window feeds a time's rows in before it reads the result). Unlike a RANGE
// window, which keeps every row of the span to retract it, the state is a monotonic deque of
// (time, value): a value stays only while it can still be the extreme of a later row (no later
// value beats it), the classic sliding-window maximum (Lemire, "Streaming maximum-minimum filter
// using no more than three comparisons per element", 2006). Rows come in event-time order.
package io.wardflow.udf;

import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.Arrays;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

public class TrailingExtreme extends AggregateFunction<Double, TrailingExtreme.Acc> {

  /** The deque: times ascending, values strictly falling (largest) or rising (smallest). */
  public static class Acc {
    public long[] times = new long[0];
    public double[] values = new double[0];
    public long latestMs = Long.MIN_VALUE;
    public long endedMs = Long.MIN_VALUE; // the latest discharge's time (MIN_VALUE: none)
    public boolean started = true; // a row of the stay after that discharge came
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("DOUBLE") Double value,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime time,
      @DataTypeHint("BIGINT") Long spanMs,
      @DataTypeHint("BOOLEAN") Boolean largest,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime measured,
      @DataTypeHint("BOOLEAN") Boolean ends) {
    if (Boolean.TRUE.equals(ends)) {
      if (time != null) {
        acc.endedMs = Math.max(acc.endedMs, time.toInstant(ZoneOffset.UTC).toEpochMilli());
      }
      acc.started = false;
      return;
    }
    if (time == null) return;
    long t = time.toInstant(ZoneOffset.UTC).toEpochMilli();
    long m = measured == null ? t : measured.toInstant(ZoneOffset.UTC).toEpochMilli();
    if (!acc.started && m > acc.endedMs) { // the next stay's first row: the ended stay's go
      acc.started = true;
      acc.times = new long[0];
      acc.values = new double[0];
    }
    if (acc.started && m <= acc.endedMs) return; // an ended stay's row, come late
    acc.latestMs = Math.max(acc.latestMs, t);
    long from = acc.latestMs - spanMs;
    int n = acc.times.length;
    int head = 0;
    while (head < n && acc.times[head] < from) head++;
    if (value == null && head == 0) return; // nothing leaves, nothing comes
    int tail = n;
    if (value != null) {
      double v = value;
      boolean max = largest == null || largest;
      while (tail > head && (max ? acc.values[tail - 1] <= v : acc.values[tail - 1] >= v)) tail--;
    }
    int keep = tail - head;
    long[] times = Arrays.copyOfRange(acc.times, head, tail + (value != null ? 1 : 0));
    double[] values = Arrays.copyOfRange(acc.values, head, tail + (value != null ? 1 : 0));
    if (value != null) {
      times[keep] = t;
      values[keep] = value;
    }
    acc.times = times;
    acc.values = values;
  }

  @Override
  public Double getValue(Acc acc) {
    return acc.values.length == 0 ? null : acc.values[0];
  }
}
