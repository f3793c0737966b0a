// When the patient's current stay began: the time of its first row measured after the latest
// row that ended a stay (a discharge), as an aggregate of an accumulate-only event-time OVER
// window (RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, partitioned by patient).
// udfs/java_decode.py compiles it into the UDF jar; jobs/screening/scoring.feature_events_sql
// calls it for the model's hours since the first record:
//   wf_stay_start(CAST(event_time AS TIMESTAMP(3)), measured_time, ends) OVER w
// MIN(event_time) over the patient's rows, but begun again after each discharge: a patient
// readmitted within the state's TTL was scored as days into the stay (training counts from the
// stay's first row). A row measured at or before the discharge (a lab drawn before it and
// resulted after; a reading at the discharge's instant) is the ended stay's, as the state's
// values count it (jobs/sepsis_screen.state_sql: `_at > discharged_at`). Until the next stay's
// first row, the ended stay's start is the result: rows at the discharge's instant are read
// after all of that instant's rows are in, whatever their order of arrival.
package io.wardflow.udf;

import java.time.LocalDateTime;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

@DataTypeHint("TIMESTAMP(3)")
public class StayStart extends AggregateFunction<LocalDateTime, StayStart.Acc> {

  /** The current stay's first row time; the ended stay's and when it ended (null: none). */
  public static class Acc {
    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime start;
    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime previous;
    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime endedAt;
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime time,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime measured,
      @DataTypeHint("BOOLEAN") Boolean ends) {
    if (Boolean.TRUE.equals(ends)) {
      if (acc.start != null) acc.previous = acc.start;
      acc.start = null;
      acc.endedAt = time;
      return;
    }
    if (time == null) return;
    LocalDateTime at = measured == null ? time : measured;
    if (acc.endedAt != null && !at.isAfter(acc.endedAt)) return; // the ended stay's
    if (acc.start == null || time.isBefore(acc.start)) acc.start = time;
  }

  @Override
  public LocalDateTime getValue(Acc acc) {
    return acc.start != null ? acc.start : acc.previous;
  }
}
