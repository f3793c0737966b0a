// A condition that holds in every row for a while, as an aggregate of an accumulate-only OVER
// window (RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, partitioned by patient).
// udfs/java_decode.py compiles it into the UDF jar; jobs/screening/rules.py calls it for
// `sirs_persistent`:
//   wf_persistent_run(condition, CAST(event_time AS TIMESTAMP(3)), record_id, for_ms,
//                     within_ms) OVER w
//
// It fires exactly where the pattern
//   PATTERN (A B*? C) WITHIN within, AFTER MATCH SKIP TO NEXT ROW, ordered by (time, record id),
//   A, B: condition; C: condition and C's time >= A's time + for
// completes a match: every row where the condition holds starts an attempt, which ends at the
// first row at least `for` after it, unless a row without the condition comes first or that row
// is `within` or more after it. MATCH_RECOGNIZE keeps every row of every open attempt; here an
// attempt is its start time alone, kept until a row at least `for` later ends it: the run's
// times of the last `for` (240 at a reading a minute for 4 hours, 8 bytes each).
//
// The result, for a time's rows: the row that completes a match (at most one: a later row of the
// same time finds no attempt left that it could end), citing the run's first row, from when the
// condition has held; or null.
package io.wardflow.udf;

import java.time.LocalDateTime;
import java.util.Arrays;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint(RuleRuns.HIT))
public class PersistentRun extends AggregateFunction<Row, PersistentRun.Acc> {

  /** The current run: its first row, its open attempts' start times; the newest time's rows. */
  public static class Acc extends RulePeers {
    public String runFirstId; // null: no run
    public long runFirstMs;
    public long[] starts = new long[0]; // ascending, distinct
    public long forMs; // the call's constants, for getValue
    public long withinMs;
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("BOOLEAN") Boolean condition,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime time,
      @DataTypeHint("STRING") String recordId,
      @DataTypeHint("BIGINT") Long forMs,
      @DataTypeHint("BIGINT") Long withinMs) {
    acc.forMs = forMs;
    acc.withinMs = withinMs;
    int holds = Boolean.TRUE.equals(condition) ? 1 : 0;
    acc.add(RuleRuns.epochMs(time), recordId, holds, folding(acc));
  }

  @Override
  public Row getValue(Acc acc) {
    return acc.result(folding(acc));
  }

  private static RulePeers.Fold folding(Acc acc) {
    return (id, ms, holds) -> fold(acc, id, ms, holds == 1);
  }

  private static void fold(Acc acc, String id, long ms, boolean holds) {
    if (!holds) { // the run breaks: every attempt fails
      acc.runFirstId = null;
      acc.starts = new long[0];
      return;
    }
    if (acc.runFirstId == null) {
      acc.runFirstId = id;
      acc.runFirstMs = ms;
    }
    int ended = 0; // the attempts this row ends: every start at least `for` before it
    while (ended < acc.starts.length && acc.starts[ended] + acc.forMs <= ms) ended++;
    if (ended > 0 && ms - acc.starts[ended - 1] < acc.withinMs) {
      acc.cite(id, acc.runFirstId, acc.runFirstMs); // the latest ended start is in time
    }
    int n = acc.starts.length - ended;
    boolean fresh = n == 0 || acc.starts[acc.starts.length - 1] != ms;
    long[] starts = Arrays.copyOfRange(acc.starts, ended, acc.starts.length + (fresh ? 1 : 0));
    if (fresh) starts[n] = ms;
    acc.starts = starts;
  }
}
