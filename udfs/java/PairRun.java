// Two consecutive readings that both meet a threshold, as an aggregate of an accumulate-only OVER
// window (RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, partitioned by patient).
// udfs/java_decode.py compiles it into the UDF jar; jobs/screening/rules.py calls it for
// `news2_sustained_medium` and `news2_red_score` (whose score is NULL, a break, without a red
// score):
//   wf_pair_run(score, eligible, CAST(event_time AS TIMESTAMP(3)), record_id, at_least,
//               within_ms) OVER w
//
// It fires exactly where the pattern
//   PATTERN (A C) WITHIN within, AFTER MATCH SKIP TO NEXT ROW, ordered by (time, record id),
//   A: eligible, score >= at_least; C: eligible, score >= at_least, C's time > A's time
// completes a match, over the rows whose `eligible` is not null: a row with `eligible` null is
// not in the rule's sequence (it neither starts, completes nor breaks an attempt), as if the
// pattern read a view without it; a row with `eligible` false breaks it. The attempt that starts
// at a row ends at the next row of the sequence, so the state is that one row.
//
// The result, for a time's rows: the row that completes a match (at most one: only the first row
// of a time follows a row of an earlier time), citing the row before it and its score; or null.
package io.wardflow.udf;

import java.time.LocalDateTime;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint(PairRun.HIT))
public class PairRun extends AggregateFunction<Row, PairRun.Acc> {
  static final String HIT =
      "ROW<last_record_id STRING, first_record_id STRING, first_time TIMESTAMP(3),"
          + " first_score INT>";
  static final int BREAK = Integer.MIN_VALUE; // a row that does not meet the threshold

  /** The sequence's last row; the newest time's rows not yet folded; the hit's first score. */
  public static class Acc extends RulePeers {
    public int prev = BREAK;
    public long prevMs;
    public String prevId;
    public int hitFirstScore;
    public int atLeast; // the call's constants, for getValue
    public long withinMs;
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("INT") Integer score,
      @DataTypeHint("BOOLEAN") Boolean eligible,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime time,
      @DataTypeHint("STRING") String recordId,
      @DataTypeHint("INT") Integer atLeast,
      @DataTypeHint("BIGINT") Long withinMs) {
    acc.atLeast = atLeast;
    acc.withinMs = withinMs;
    if (eligible == null) {
      acc.skip();
      return;
    }
    boolean meets = eligible && score != null && score >= atLeast;
    acc.add(RuleRuns.epochMs(time), recordId, meets ? score : BREAK, folding(acc));
  }

  @Override
  public Row getValue(Acc acc) {
    Row hit = acc.result(folding(acc));
    if (hit == null) return null;
    return Row.of(hit.getField(0), hit.getField(1), hit.getField(2), acc.hitFirstScore);
  }

  private static RulePeers.Fold folding(Acc acc) {
    return (id, ms, score) -> fold(acc, id, ms, score);
  }

  private static void fold(Acc acc, String id, long ms, int score) {
    boolean completes =
        score != BREAK && acc.prev != BREAK && ms > acc.prevMs && ms - acc.prevMs < acc.withinMs;
    if (completes && acc.hitId == null) {
      acc.cite(id, acc.prevId, acc.prevMs);
      acc.hitFirstScore = acc.prev;
    }
    acc.prev = score;
    acc.prevMs = ms;
    acc.prevId = id;
  }
}
