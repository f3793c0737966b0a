// When the patient's current stay began: the time of its first row after the latest row that
// ended a stay (a discharge), as an aggregate of an accumulate-only event-time OVER window
// (RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, partitioned by patient). udfs/java_decode.py
// compiles it into the UDF jar; jobs/screening/scoring.feature_events_sql calls it for the model's
// hours since the first record:
//   wf_stay_start(CAST(event_time AS TIMESTAMP(3)), ends) OVER w
// MIN(event_time) over the patient's rows, but begun again after each discharge: a patient
// readmitted within the state's TTL was scored as days into the stay (training counts from the
// stay's first row). NULL on a row that ends a stay (no stay is going on) and before any row.
package io.wardflow.udf;

import java.time.LocalDateTime;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

@DataTypeHint("TIMESTAMP(3)")
public class StayStart extends AggregateFunction<LocalDateTime, StayStart.Acc> {

  /** The current stay's first row time (null: none since the latest discharge). */
  public static class Acc {
    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime start;
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime time,
      @DataTypeHint("BOOLEAN") Boolean ends) {
    if (Boolean.TRUE.equals(ends)) {
      acc.start = null;
    } else if (time != null && (acc.start == null || time.isBefore(acc.start))) {
      acc.start = time;
    }
  }

  @Override
  public LocalDateTime getValue(Acc acc) {
    return acc.start;
  }
}
