// A score's rise along a run of readings that never falls, as an aggregate of an accumulate-only
// OVER window (RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, partitioned by patient).
// udfs/java_decode.py compiles it into the UDF jar; jobs/screening/rules.py calls it for
// `news2_rising`:
//   wf_rising_run(score, eligible, CAST(event_time AS TIMESTAMP(3)), record_id,
//                 at_least, rise, within_ms) OVER w
//
// It fires exactly where the pattern
//   PATTERN (A U*? C) WITHIN within, AFTER MATCH SKIP TO NEXT ROW, ordered by (time, record id),
//   A: eligible; U: eligible, score >= the previous row's; C: eligible, score >= the previous
//   row's, score >= at_least, score >= A's score + rise
// completes a match, over the rows whose `eligible` is not null (a row with `eligible` null is
// not in the rule's sequence, as if the pattern read a view without it): every eligible row
// starts an attempt, which ends at the first row that completes it, unless the run falls, an ineligible row (or a null score) comes, or the time
// runs out first (C's time - A's time >= within). MATCH_RECOGNIZE keeps every row of every open
// attempt for up to `within`: with a reading a minute, hundreds of rows per patient. Here the
// state is one entry per distinct score of the current run: the attempts that start at one score
// all end at the same row (the first at or above their threshold; the run never falls), so a
// score keeps only its last row, whose attempt lives longest. NEWS2 has 21 scores.
//
// The result, for a time's rows: the row that completes a match (at most one: the rows of a time
// share their patient state, hence their score), and the start it cites: of the starts it
// completes, the last row at the lowest score, where the rise began; or null.
package io.wardflow.udf;

import java.time.LocalDateTime;
import java.util.Arrays;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint(RuleRuns.HIT))
public class RisingRun extends AggregateFunction<Row, RisingRun.Acc> {
  static final int BREAK = Integer.MIN_VALUE; // a row that is not eligible, or no run

  /** The current run's open starts by score, and the newest time's rows not yet folded. */
  public static class Acc extends RulePeers {
    public int prev = BREAK; // the run's last score
    public int[] scores = new int[0]; // ascending: the run never falls
    public long[] lastMs = new long[0]; // per score, its last row's time and record id
    public String[] lastIds = new String[0];
    public int atLeast; // the call's constants, for getValue
    public int rise;
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
      @DataTypeHint("INT") Integer rise,
      @DataTypeHint("BIGINT") Long withinMs) {
    acc.atLeast = atLeast;
    acc.rise = rise;
    acc.withinMs = withinMs;
    if (eligible == null) {
      acc.skip();
      return;
    }
    boolean ok = score != null && Boolean.TRUE.equals(eligible);
    acc.add(RuleRuns.epochMs(time), recordId, ok ? score : BREAK, folding(acc));
  }

  @Override
  public Row getValue(Acc acc) {
    return acc.result(folding(acc));
  }

  private static RulePeers.Fold folding(Acc acc) {
    return (id, ms, score) -> fold(acc, id, ms, score);
  }

  private static void fold(Acc acc, String id, long ms, int score) {
    int n = 0;
    if (score != BREAK && acc.prev != BREAK && score >= acc.prev) {
      for (int i = 0; i < acc.scores.length; i++) {
        if (ms - acc.lastMs[i] >= acc.withinMs) continue; // out of time: never completes
        if (score >= Math.max(acc.atLeast, acc.scores[i] + acc.rise)) {
          acc.cite(id, acc.lastIds[i], acc.lastMs[i]); // the lowest first: where the rise began
          continue; // its attempts end here
        }
        acc.scores[n] = acc.scores[i];
        acc.lastMs[n] = acc.lastMs[i];
        acc.lastIds[n] = acc.lastIds[i];
        n++;
      }
    }
    if (score == BREAK) { // the run breaks, and this row starts nothing
      resize(acc, 0);
      acc.prev = BREAK;
      return;
    }
    if (n == 0 || acc.scores[n - 1] != score) {
      resize(acc, n + 1);
      acc.scores[n] = score;
    } else {
      resize(acc, n);
    }
    int last = acc.scores.length - 1;
    acc.lastMs[last] = ms;
    acc.lastIds[last] = id;
    acc.prev = score;
  }

  private static void resize(Acc acc, int n) {
    if (n == acc.scores.length) return;
    acc.scores = Arrays.copyOf(acc.scores, n);
    acc.lastMs = Arrays.copyOf(acc.lastMs, n);
    acc.lastIds = Arrays.copyOf(acc.lastIds, n);
  }
}
