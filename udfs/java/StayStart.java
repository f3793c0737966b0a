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
// values count it (jobs/sepsis_screen.state_sql: `_at > discharged_at`). The ended stay's start
// stays the result until the next stay's first row, and a row of the ended stay still counts
// in it (one at the discharge's instant, before or after it in arrival order alike: the
// instant's rows are read after all of them are in).
package io.wardflow.udf;

import java.time.LocalDateTime;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

@DataTypeHint("TIMESTAMP(3)")
public class StayStart extends AggregateFunction<LocalDateTime, StayStart.Acc> {

  /** The stay's first row time, when the latest discharge ended it (null: none), and whether
   * the next stay has begun since (a row measured after that discharge). */
  public static class Acc {
    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime start;
    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime endedAt;
    public boolean ended;
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
      if (time != null && (acc.endedAt == null || time.isAfter(acc.endedAt))) acc.endedAt = time;
      acc.ended = true;
      return;
    }
    if (time == null) return;
    LocalDateTime at = measured == null ? time : measured;
    if (acc.ended && acc.endedAt != null && at.isAfter(acc.endedAt)) {
      acc.ended = false; // the next stay's first row
      acc.start = time;
      return;
    }
    if (!acc.ended && acc.endedAt != null && !at.isAfter(acc.endedAt)) return; // come late
    if (acc.start == null || time.isBefore(acc.start)) acc.start = time;
  }

  @Override
  public LocalDateTime getValue(Acc acc) {
    return acc.start;
  }
}
