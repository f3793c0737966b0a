// Whether an ADT discharge ends the patient's stay, as an aggregate of an accumulate-only
// processing-time OVER window (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, partitioned by
// patient, over all of the patient's records in arrival order). udfs/java_decode.py compiles it
// into the UDF jar; jobs/runtime/stays.py calls it for the screening and catalog jobs:
//   wf_stay_discharge(visit_event, visit_encounter, visit_unit_id) OVER w
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
// prefixed "stale:" by jobs/runtime/stays.py) changes the state only where it is of the open
// stay (`ofTheStay`), as the census does after its retention.
// The result is that of the current row: TRUE for a discharge that ends the stay, else FALSE.
// One row of state per patient (two strings, a flag and the latest row's result), kept for the
// job's state TTL like the rest.
package io.wardflow.udf;

import java.util.Set;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

public class StayDischarge extends AggregateFunction<Boolean, StayDischarge.Acc> {
  static final String STALE = @STALE@; // an event type's prefix: jobs/runtime/stays.py
  static final Set<String> PLACING = Set.of("admit", "transfer", "merged_in", "cancel_transfer");

  /** What the patient's ADT events so far say; `ends`: the result for the latest row. */
  public static class Acc {
    public String stayEncounter; // null: no stay yet
    public Boolean open; // null: no admission or discharge yet
    public String placedUnit;
    public boolean ends;
  }

  @Override
  public Acc createAccumulator() {
    return new Acc();
  }

  public void accumulate(
      Acc acc,
      @DataTypeHint("STRING") String event,
      @DataTypeHint("STRING") String encounter,
      @DataTypeHint("STRING") String unit) {
    acc.ends = false;
    if (event == null) return;
    if (event.startsWith(STALE)) {
      // recorded later than the job remembers (jobs/runtime/stays.py): only of the stay
      event = event.substring(STALE.length());
      if (!ofTheStay(acc, event, encounter, unit)) return;
    }
    if (event.equals("discharge")) {
      acc.ends = !anotherVisits(acc, encounter, unit);
      // another visit's leaves the stay as it was (open), as it leaves the census
      if (acc.ends) acc.open = false;
      return;
    }
    // an A13 of the discharge that closed the stay reopens it where it says the patient is
    // (the census takes it back only then; another visit's A13 moves no one)
    boolean reopens = event.equals("cancel_discharge") && Boolean.FALSE.equals(acc.open);
    boolean stay = event.equals("admit") || (event.equals("merged_in") && unit != null);
    if (stay) acc.stayEncounter = encounter == null ? "" : encounter;
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
   * Whether an event recorded later than the job remembers is of the open stay (the census's
   * `_of_the_stay`): no merge, and it names no encounter, or the stay's, or (the stay's unknown)
   * the unit the patient was last placed in. Any other changes nothing: a FHIR Encounter's
   * later version sends an old visit's admission and discharge again, their ids forgotten.
   */
  static boolean ofTheStay(Acc acc, String event, String encounter, String unit) {
    if (!Boolean.TRUE.equals(acc.open) || event.startsWith("merged_")) return false;
    if (encounter == null) return true;
    if (acc.stayEncounter != null && !acc.stayEncounter.isEmpty()) {
      return encounter.equals(acc.stayEncounter);
    }
    return unit != null && unit.equals(acc.placedUnit);
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
  public Boolean getValue(Acc acc) {
    return acc.ends;
  }
}
