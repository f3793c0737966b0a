// Event-time timers of the process table functions (AlertLifecycle, CensusPlacement): Flink 2.2
// silently ignores a timer registered at or behind the current watermark
// (WritableInternalTimeContext.registerOnTime returns early), so a function that must act at a
// time the watermark has passed does it itself, or registers the next time Flink will accept.
package io.wardflow.udf;

import org.apache.flink.table.functions.ProcessTableFunction.TimeContext;

final class EventTimers {
  private EventTimers() {}

  /** Whether a timer at `t` would fire (it lies after the watermark, or there is none yet). */
  static boolean accepted(TimeContext<Long> time, long t) {
    Long watermark = time.currentWatermark();
    return watermark == null || t > watermark;
  }

  /** A timer at `t`, or at the watermark's next millisecond if `t` is at or behind it: a row
   * that late is handled when the watermark next moves. Flink 2.2 drops such a row before eval
   * (FLINK-39436 lets it in later; tests/flink/test_census_retention_jvm.py pins today's
   * behaviour), and the sources dead-letter late records with a reason before that. */
  static void registerNoEarlierThanNext(TimeContext<Long> time, long t) {
    time.registerOnTime(accepted(time, t) ? t : time.currentWatermark() + 1);
  }

  /** The same as a named timer, which replaces the last one of that name. */
  static void registerNoEarlierThanNext(TimeContext<Long> time, String name, long t) {
    time.registerOnTime(name, accepted(time, t) ? t : time.currentWatermark() + 1);
  }
}
