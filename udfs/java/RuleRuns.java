// What the run rules (RisingRun, PersistentRun, PairRun) share besides their accumulator's waiting rows
// (RulePeers): the result type, the record-id order, array and time helpers.
package io.wardflow.udf;

import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.Comparator;
import org.apache.flink.types.Row;

final class RuleRuns {
  /** The row of the time that completes a match, and the start it cites. */
  static final String HIT =
      "ROW<last_record_id STRING, first_record_id STRING, first_time TIMESTAMP(3)>";

  private RuleRuns() {}

  static long epochMs(LocalDateTime time) {
    return time.toInstant(ZoneOffset.UTC).toEpochMilli();
  }

  /** Indexes of `ids[0..n)` in record-id order (stable; UTF-16 order, which is Flink's UTF-8
   * byte order for record ids without characters beyond the Basic Multilingual Plane). */
  static Integer[] order(String[] ids, int n) {
    Integer[] idx = new Integer[n];
    for (int i = 0; i < n; i++) idx[i] = i;
    Comparator<String> byId = Comparator.nullsFirst(Comparator.naturalOrder());
    if (n > 1) Arrays.sort(idx, Comparator.comparing((Integer i) -> ids[i], byId));
    return idx;
  }

  static Row hit(String lastId, String firstId, long firstMs) {
    if (lastId == null) return null;
    LocalDateTime first = LocalDateTime.ofInstant(Instant.ofEpochMilli(firstMs), ZoneOffset.UTC);
    return Row.of(lastId, firstId, first);
  }

  static String[] append(String[] a, String v) {
    String[] out = Arrays.copyOf(a, a.length + 1);
    out[a.length] = v;
    return out;
  }

  static int[] append(int[] a, int v) {
    int[] out = Arrays.copyOf(a, a.length + 1);
    out[a.length] = v;
    return out;
  }
}
