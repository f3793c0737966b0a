// The part of a run rule's accumulator (RisingRun, PersistentRun, PairRun) that waits for a time's rows:
// an accumulate-only RANGE OVER window feeds in every row of one event time before it reads the
// result, and the rules fold them in record-id order, as MATCH_RECOGNIZE ORDER BY (time, record
// id) does. Also the hit of the last folded time. A public class with public fields: Flink
// stores it, with the rule's own fields, as the accumulator's structured type.
package io.wardflow.udf;

import org.apache.flink.types.Row;

public class RulePeers {
  public long peerMs = Long.MIN_VALUE; // the newest time
  public String[] peerIds = new String[0]; // its rows' record ids, and a value per row
  public int[] peerValues = new int[0];
  public String hitId; // the last folded time's hit: completing row, cited start
  public String hitFirstId;
  public long hitFirstMs;

  /** One row's part in a run: it may complete a match (through `cite`). */
  interface Fold {
    void fold(String id, long ms, int value);
  }

  /** Queue a row of time `ms`, folding the rows of an earlier time first. */
  void add(long ms, String id, int value, Fold fold) {
    if (peerIds.length > 0 && ms != peerMs) settle(fold);
    peerMs = ms;
    peerIds = RuleRuns.append(peerIds, id);
    peerValues = RuleRuns.append(peerValues, value);
  }

  /** A row outside the rule's sequence (its `eligible` is null): it folds nothing, and a time
   * of such rows alone completes nothing (not the hit of the time before it). */
  void skip() {
    if (peerIds.length == 0) hitId = null;
  }

  /** The result for the newest time: its rows folded, the first that completes a match. */
  Row result(Fold fold) {
    if (peerIds.length > 0) settle(fold);
    return RuleRuns.hit(hitId, hitFirstId, hitFirstMs);
  }

  /** A row completes a match citing a start; only a time's first such row counts. */
  void cite(String id, String firstId, long firstMs) {
    if (hitId != null) return;
    hitId = id;
    hitFirstId = firstId;
    hitFirstMs = firstMs;
  }

  private void settle(Fold fold) {
    hitId = null;
    for (int i : RuleRuns.order(peerIds, peerIds.length)) {
      fold.fold(peerIds[i], peerMs, peerValues[i]);
    }
    peerIds = new String[0];
    peerValues = new int[0];
  }
}
