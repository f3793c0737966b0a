// What an ADT event does to the patient's stay (ENDS, IGNORED or NONE), as an aggregate of an
// accumulate-only processing-time OVER window (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW,
// partitioned by patient, over all of the patient's records in arrival order).
// udfs/java_decode.py compiles it into the UDF jar; jobs/runtime/stays.py calls it for the
// screening and catalog jobs:
//   wf_stay_discharge(visit_event, visit_encounter, visit_unit_id, visit_time) OVER w
// (visit_event: the ADT event type of an event id's first copy, null for a resend and for a
// record that is not an ADT event).
//
// The rule (jobs/runtime/stays.py, the census's udfs/census.py `_another_visits`): a discharge
// ends the stay unless it is another visit's, one naming an encounter other than the stay's and
// a unit other than the one the patient was last placed in, while the stay is open. The state,
// as the patient's ADT events so far leave it:
// - the stay's encounter: that of the latest admission, or merge naming a unit ("" for none);
// - whether it is open: after an admission, such a merge or a cancelled discharge (A13); closed
//   after a discharge that ended it (another visit's leaves it as it was; a discharge while it
//   is closed ends it again: no state is left to end);
// - the unit last placed in: by an admission, transfer, merge or cancelled transfer, an A13
//   of the discharge that closed the stay (where it says the patient is), or an update of the
//   stay's own visit (or of none), each naming a unit.
// An event recorded longer after it happened than the job remembers (its state TTL; its type
// prefixed "stale:" by jobs/runtime/stays.py) may be one it has forgotten, sent again: it is
// IGNORED where the state has seen it (`sentAgain`); any other counts as any event does (an
// admission registered a day late is the stay from then on, an A13 entered late reopens it).
// The result is that of the current row: ENDS (1) for a discharge that ends the stay, IGNORED
// (2) for a stale event that changes nothing, else NONE (0).
// One row of state per patient (two strings, two flags, two times and the latest row's result),
// kept for the job's state TTL like the rest.
package io.wardflow.udf;

import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.Set;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

public class StayDischarge extends AggregateFunction<Integer, StayDischarge.Acc> {
  static final String STALE = @STALE@; // an event type's prefix: jobs/runtime/stays.py
  static final Set<String> PLACING = Set.of("admit", "transfer", "merged_in", "cancel_transfer");
  static final int NONE = 0; // the record changes no stay, or only the state
  static final int ENDS = 1; // a discharge that ends the stay
  static final int IGNORED = 2; // a stale event seen before, sent again: it changes nothing

  /** What the patient's ADT events so far say; `result`: the latest row's. */
  public static class Acc {
    public String stayEncounter; // null: no stay yet
    public Boolean open; // null: no admission or discharge yet
    public String placedUnit;
    public Long stayStartMs; // when the stay's admission happened (its event time); null: unknown
    public Long stayEndMs; // the latest time a discharge ended it (event time); null: none since
    public boolean endedByOwn; // a discharge naming the stay's encounter ended it since it closed
    public int result;
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("STRING") String event,
      @DataTypeHint("STRING") String encounter,
      @DataTypeHint("STRING") String unit,
      @DataTypeHint("TIMESTAMP(3)") LocalDateTime happened) {
    acc.result = NONE;
    if (event == null) return;
    Long happenedMs = happened == null ? null : happened.toInstant(ZoneOffset.UTC).toEpochMilli();
    if (event.startsWith(STALE)) {
      // recorded later than the job remembers (jobs/runtime/stays.py)
      event = event.substring(STALE.length());
      if (sentAgain(acc, event, encounter, happenedMs)) {
        acc.result = IGNORED;
        return;
      }
    }
    if (event.equals("discharge")) {
      boolean ends = !anotherVisits(acc, encounter, unit);
      // another visit's leaves the stay as it was (open), as it leaves the census
      if (ends) {
        boolean own =
            encounter != null && acc.stayEncounter != null && encounter.equals(acc.stayEncounter);
        if (Boolean.FALSE.equals(acc.open)) { // ended again: the latest end, and any own
          if (happenedMs != null && (acc.stayEndMs == null || happenedMs > acc.stayEndMs)) {
            acc.stayEndMs = happenedMs;
          }
          acc.endedByOwn |= own;
        } else {
          acc.stayEndMs = happenedMs;
          acc.endedByOwn = own;
        }
        acc.open = false;
        acc.result = ENDS;
      }
      return;
    }
    // an A13 of the discharge that closed the stay reopens it where it says the patient is
    // (the census takes it back only then; another visit's A13 moves no one)
    boolean reopens = event.equals("cancel_discharge") && Boolean.FALSE.equals(acc.open);
    boolean stay = event.equals("admit") || (event.equals("merged_in") && unit != null);
    if (stay) {
      acc.stayEncounter = encounter == null ? "" : encounter;
      acc.stayStartMs = happenedMs;
      acc.stayEndMs = null;
      acc.endedByOwn = false;
    }
    if (stay || event.equals("cancel_discharge")) acc.open = true;
    boolean ownUpdate =
        event.equals("update")
            && (encounter == null
                || acc.stayEncounter == null
                || acc.stayEncounter.isEmpty()
                || encounter.equals(acc.stayEncounter));
    if ((PLACING.contains(event) || ownUpdate || reopens) && unit != null) acc.placedUnit = unit;
  }

  /**
   * Whether a stale event is one the state has seen, sent again (a FHIR Encounter's later version
   * sends its visit's admission and discharge again, their ids forgotten, timed at the location
   * periods it lists): it happened before the stay began; or it is an admission, or a discharge not
   * naming the stay's encounter, at its start (a discharge at the admission's millisecond is the
   * visit before's); or an admission of the stay's own encounter while the stay is open, or closed
   * and it no later than the discharge that ended it; or, the stay closed, a discharge at or before
   * the latest that ended it, or of its encounter where a discharge of its own ended it since it
   * closed, or an A13 before that discharge (a conformant A13 is timed as the discharge it cancels:
   * it counts). A discharge re-issued after an A13 reopened the stay counts, and so does a
   * corrected disposition (A03, A13, A03) replayed: it reopens and ends the stay again. Without a
   * stay's times only the own-encounter admission of an open stay is decided: anything else counts.
   */
  static boolean sentAgain(Acc acc, String event, String encounter, Long happenedMs) {
    boolean starts = event.equals("admit") || event.equals("merged_in");
    boolean discharge = event.equals("discharge");
    boolean own =
        encounter != null
            && acc.stayEncounter != null
            && !acc.stayEncounter.isEmpty()
            && encounter.equals(acc.stayEncounter);
    boolean open = Boolean.TRUE.equals(acc.open);
    boolean closed = Boolean.FALSE.equals(acc.open);
    if (starts && own && open) return true;
    if (happenedMs == null || acc.stayStartMs == null) return false;
    if (happenedMs < acc.stayStartMs) return true;
    if ((starts || (discharge && !own)) && happenedMs <= acc.stayStartMs) return true;
    if (!closed) return false;
    boolean atOrBeforeEnd = acc.stayEndMs != null && happenedMs <= acc.stayEndMs;
    if (starts) return own && atOrBeforeEnd;
    if (discharge) return atOrBeforeEnd || (own && acc.endedByOwn);
    return event.equals("cancel_discharge") && acc.stayEndMs != null && happenedMs < acc.stayEndMs;
  }

  /** A discharge of another visit while the stay is open, from the state before it. */
  static boolean anotherVisits(Acc acc, String encounter, String unit) {
    String stay = acc.stayEncounter;
    return stay != null
        && !stay.isEmpty()
        && encounter != null
        && !encounter.equals(stay)
        && Boolean.TRUE.equals(acc.open)
        && unit != null
        && acc.placedUnit != null
        && !unit.equals(acc.placedUnit);
  }

  @Override
  public Integer getValue(Acc acc) {
    return acc.result;
  }
}
