// The bed-census keyed function in the JVM: udfs/census.py's PatientPlacement (the Python
// reference, and the oracle of tests/flink/test_census_placement.py) as a Flink process table
// function, one virtual processor per patient. udfs/java_decode.py compiles it into the UDF jar
// and writes schemas.rows.CENSUS_PLACED's Flink type into the output hint.
//
// Called as (jobs/bed_census.py)
//   wf_census_placement(input => TABLE t PARTITION BY patient_token, on_time => DESCRIPTOR(rowtime),
//                       uid => 'census-placement')
// on rows of schemas.rows.CENSUS_IN (read by name). Events wait in state until the watermark
// passes their event time, then apply in (event time, partition, offset) order; each yields an
// `event` row (applied or no_change) plus its census `delta` rows, or a `dead_letter` row: the
// fields of CENSUS_OUT but patient_token (the partition key, which the framework puts first)
// and the capacities (configuration, which the job's SQL adds; it also refuses unknown units
// before this function, since that depends on no state). A patient without a bed is forgotten
// RETENTION_MS of event time after their last event (udfs.census.RETENTION_MS), also when the
// watermark jumps past that at once; the job's idle-state TTL (table.exec.state.ttl) does not
// apply: a patient may hold a bed for weeks without an event.
package io.wardflow.udf;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint("@OUTPUT@"))
public class CensusPlacement extends ProcessTableFunction<Row> {
  static final int HISTORY = @HISTORY@; // placement changes kept per patient for cancels
  static final long RETENTION_MS = @RETENTION_MS@; // without a bed (A13 can follow a discharge)
  static final String STALE = @STALE@; // an event type's prefix: udfs.census.is_stale
  static final String STALE_REASON = @STALE_REASON@;

  /** A bed: facility, unit and (optional) bed. */
  public static class Place {
    public String facility;
    public String unit;
    public String bed;

    public Place() {}

    Place(String facility, String unit, String bed) {
      this.facility = facility;
      this.unit = unit;
      this.bed = bed;
    }

    boolean sameUnit(Place o) {
      return facility.equals(o.facility) && unit.equals(o.unit);
    }

    boolean same(Place o) {
      return sameUnit(o) && (bed == null ? o.bed == null : bed.equals(o.bed));
    }
  }

  /** A placement change: its event type and where the patient was before it (null: no bed). */
  public static class Change {
    public String kind;
    public Place before;
  }

  /** An event waiting for the watermark. */
  public static class Pending {
    public long timeMs;
    public int partition;
    public long offset;
    public String eventId;
    public String eventType;
    public String facility;
    public String unit;
    public String bed;
    public String topic;
    public byte[] payload;
  }

  /** One patient's state. */
  public static class Placement {
    public Place place;
    public Change[] history;
    public String[] seen;
    public Pending[] pending;
    public long expiryMs;
  }

  /**
   * What the census knows of encounters, a state entry beside the placement's: a savepoint
   * written before encounters were kept holds a Placement of that version's fields, and Flink's
   * row serializer restores no field added to a state's type, so Placement and Pending keep
   * theirs for good. A patient restored from such a savepoint has no stay, nor do their pending
   * events have encounters: their cancels apply as before, and a void of their encounter is
   * refused (udfs.census).
   */
  public static class Visit {
    public String stay; // the encounter of the admission (or merge) that placed the patient
    public String[] waiting; // the encounters of the last entries of Placement.pending, in order
  }

  private static final Comparator<Pending> ORDER =
      Comparator.<Pending>comparingLong(p -> p.timeMs)
          .thenComparingInt(p -> p.partition)
          .thenComparingLong(p -> p.offset);

  public void eval(
      Context ctx,
      @StateHint(name = "placement", ttl = "0 ms") Placement s,
      @StateHint(name = "visit", ttl = "0 ms") Visit v,
      @ArgumentHint(
              name = "input",
              value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.REQUIRE_ON_TIME})
          Row input) {
    Pending p = new Pending();
    p.timeMs = ctx.timeContext(Long.class).time();
    p.partition = input.<Integer>getFieldAs("kafka_partition");
    p.offset = input.<Long>getFieldAs("kafka_offset");
    p.eventId = input.getFieldAs("event_id");
    p.eventType = input.getFieldAs("event_type");
    p.facility = input.getFieldAs("facility_id");
    p.unit = input.getFieldAs("unit_id");
    p.bed = input.getFieldAs("bed_id");
    p.topic = input.getFieldAs("source_topic");
    p.payload = input.getFieldAs("payload");
    v.waiting = append(waiting(s, v), input.getFieldAs("encounter_token"), String[]::new);
    s.pending = append(s.pending, p, Pending[]::new);
    EventTimers.registerNoEarlierThanNext(ctx.timeContext(Long.class), p.timeMs);
  }

  public void onTimer(OnTimerContext ctx, Placement s, Visit v) {
    // Events apply at their own timers (an output row's time is its timer's). Flink ignores a
    // timer registered at or behind the watermark, so a retention the watermark has already
    // passed (at the end of a bounded input, or after a jump of more than RETENTION_MS) is not
    // a timer: the patient is forgotten now, or before the next pending event applies.
    long now = ctx.timeContext(Long.class).time();
    boolean expiring = s.expiryMs > 0; // an expiry timer may be registered
    Pending[] pending = s.pending == null ? new Pending[0] : s.pending;
    String[] encounters = waiting(s, v);
    Map<Pending, String> encounterOf = new IdentityHashMap<>();
    List<Pending> due = new ArrayList<>();
    List<Pending> later = new ArrayList<>();
    for (int i = 0; i < pending.length; i++) {
      encounterOf.put(pending[i], encounters[i]);
      (pending[i].timeMs <= now ? due : later).add(pending[i]);
    }
    due.sort(ORDER);
    for (Pending e : due) {
      if (expired(s, e.timeMs)) forget(s, v);
      apply(s, v, e, encounterOf.get(e));
      s.expiryMs = s.place == null ? e.timeMs + RETENTION_MS : 0;
    }
    s.pending = later.toArray(new Pending[0]);
    v.waiting = later.stream().map(encounterOf::get).toArray(String[]::new);
    if (s.place != null) { // in a bed again: an expiry timer would only keep its entry
      if (expiring) ctx.timeContext(Long.class).clearTimer("expiry");
      return;
    }
    if (s.expiryMs == 0) { // a stale timer of a patient already forgotten: leave no state row
      if (later.isEmpty()) forgetNow(ctx);
      return;
    }
    if (s.expiryMs > now && EventTimers.accepted(ctx.timeContext(Long.class), s.expiryMs)) {
      ctx.timeContext(Long.class).registerOnTime("expiry", s.expiryMs); // replaces the last one
    } else if (later.isEmpty()) {
      forgetNow(ctx);
    } // else the next pending event forgets the patient before it applies
  }

  /** Clears the patient's state and the named expiry timer, which clearAllState() leaves: a
   * named timer keeps an entry in Flink's own map state until it is cleared, fired or not, and
   * a stale one would fire later on the cleared patient. */
  private static void forgetNow(OnTimerContext ctx) {
    ctx.timeContext(Long.class).clearTimer("expiry");
    ctx.clearAllState();
  }

  /** The patient has held no bed for RETENTION_MS of event time by `timeMs`. */
  private static boolean expired(Placement s, long timeMs) {
    return s.place == null && s.expiryMs > 0 && timeMs >= s.expiryMs;
  }

  /** What clearAllState() would have left, for a patient forgotten between two due events. */
  private static void forget(Placement s, Visit v) {
    s.history = null;
    s.seen = null;
    s.expiryMs = 0;
    v.stay = null;
  }

  /** The encounter of each of s.pending's events, in its order: Visit.waiting names the last
   * ones, and events restored from a savepoint without it (before it) have none. */
  private static String[] waiting(Placement s, Visit v) {
    int n = s.pending == null ? 0 : s.pending.length;
    String[] known = v.waiting == null ? new String[0] : v.waiting;
    String[] all = new String[n];
    int kept = Math.min(n, known.length);
    System.arraycopy(known, known.length - kept, all, n - kept, kept);
    return all;
  }

  // --- the state machine (udfs/census.py) ----------------------------------------------------

  private void apply(Placement s, Visit v, Pending e, String encounter) {
    List<Row> deltas = new ArrayList<>();
    String[] outcome = placementApply(s, v, e, encounter, deltas);
    boolean refused = !outcome[0].equals("applied") && !outcome[0].equals("no_change");
    if (refused) {
      collect(eventRow("dead_letter", e, e.facility, e.unit, outcome));
      return;
    }
    // where the patient is after it (udfs.census_stays.census_rows): an A13 without PV1-3 names
    // the sender's facility, not the one its restored bed is in
    Place at = s.place;
    collect(eventRow("event", e, at == null ? e.facility : at.facility, at == null ? null : at.unit,
        outcome));
    for (Row d : deltas) collect(d);
  }

  private String[] placementApply(
      Placement s, Visit v, Pending e, String encounter, List<Row> deltas) {
    // recorded more than RETENTION_MS after it happened (udfs.census.is_stale): applied to the
    // stay the patient is in only
    boolean stale = e.eventType != null && e.eventType.startsWith(STALE);
    if (stale) e.eventType = e.eventType.substring(STALE.length());
    if (s.seen != null && Arrays.asList(s.seen).contains(e.eventId)) {
      return out("duplicate", "event " + e.eventId + " was already applied");
    }
    if (stale && !ofTheStay(s, v, e, encounter)) return out("stale", STALE_REASON);
    String[] outcome = transition(s, v, e, encounter, deltas);
    if (outcome[0].equals("applied") || outcome[0].equals("no_change")) {
      s.seen = append(s.seen, e.eventId, String[]::new);
    }
    return outcome;
  }

  private String[] transition(
      Placement s, Visit v, Pending e, String encounter, List<Row> deltas) {
    long t = e.timeMs;
    Place next = notEmpty(e.unit) ? new Place(e.facility, e.unit, e.bed) : null;
    Place before = s.place;
    String kind = e.eventType;
    if (kind.equals("register") || kind.equals("preadmit")) {
      return out("no_change", kind + " does not occupy a bed");
    }
    if (kind.equals("leave_of_absence") || kind.equals("return_from_leave")) {
      return out("no_change", kind + ": the bed is held while the patient is away");
    }
    if (kind.equals("admit")) {
      if (next == null) return out("missing_unit", "an admission must name a unit");
      if (before != null) {
        return out("already_admitted", "patient holds a bed in " + before.unit + " already");
      }
      v.stay = orNull(encounter);
      return move(s, kind, next, t, true, deltas);
    }
    if ((kind.equals("transfer") || kind.equals("discharge")) && before == null) {
      return out("not_admitted", kind + " for a patient who holds no bed");
    }
    if (kind.equals("transfer")) {
      if (next == null) return out("missing_unit", "a transfer must name a unit");
      // a resend under a new message id: kept out of the history, so an A12 undoes the first
      if (next.same(before)) return out("no_change", "the patient holds that bed already");
      return move(s, kind, next, t, false, deltas);
    }
    if (kind.equals("discharge")) {
      // another encounter's discharge from a unit the patient is not in (udfs.census)
      if (anotherVisits(v, encounter, next, before)) {
        return out(
            "not_admitted",
            "a discharge of another encounter than the stay's, from a unit the patient is not in"
                + " (an emergency visit closed after the inpatient admission): the stay's bed is"
                + " kept");
      }
      return move(s, kind, null, t, false, deltas);
    }
    if (kind.equals("update")) {
      if (before == null || next == null || next.same(before)) {
        return out("no_change", "no bed or unit change");
      }
      if (anotherVisits(v, encounter, next, before)) {
        return out(
            "no_change",
            "an update of another encounter than the stay's, naming a unit the patient is not in"
                + " (an emergency or pre-admission visit's A08): the stay's bed is kept");
      }
      s.place = next;
      between(before, next, t, 0, deltas);
      return out("applied", null);
    }
    if (kind.equals("merged_away")) {
      if (before == null) return out("no_change", "the merged record holds no bed");
      if (next == null) {
        return out("no_change", "the merge does not say where the patient is: the bed is kept");
      }
      return merge(s, kind, null, t, deltas);
    }
    if (kind.equals("merged_in")) {
      if (next == null) return out("no_change", "the merge names no unit: it places no one");
      if (before != null && next.same(before)) {
        return out("no_change", "the surviving record holds that bed already");
      }
      if (before == null) v.stay = orNull(encounter);
      return merge(s, kind, next, t, deltas);
    }
    if (kind.equals("void_encounter")) return voidEncounter(s, v, encounter, t, deltas);
    if (kind.equals("cancel_admit") && notEmpty(encounter) && v.stay != null) {
      // bound: the cancel names its encounter and the census knows the stay's
      if (!v.stay.equals(encounter)) {
        return out(
            "nothing_to_cancel", "the cancelled admission is another encounter's than the stay's");
      }
      if (s.place != null) return voidStay(s, v, t, deltas); // however many moves back
    }
    if (kind.startsWith("cancel_")) {
      return cancel(s, v, kind.substring("cancel_".length()), t, next, deltas);
    }
    return out("bad_event_type", "unknown event type '" + kind + "'");
  }

  /** udfs.census PatientPlacement._of_the_stay: placed, no merge, the stay's encounter. */
  private static boolean ofTheStay(Placement s, Visit v, Pending e, String encounter) {
    if (s.place == null) return false;
    if (e.eventType.equals("merged_away") || e.eventType.equals("merged_in")) return false;
    if (!notEmpty(encounter)) return true;
    if (v.stay != null) return v.stay.equals(encounter);
    return e.unit != null && e.unit.equals(s.place.unit);
  }

  /** udfs.census PatientPlacement._another_visits: another encounter, another unit. */
  private static boolean anotherVisits(Visit v, String encounter, Place next, Place before) {
    return notEmpty(encounter)
        && v.stay != null
        && !v.stay.equals(encounter)
        && next != null
        && before != null
        && !next.unit.equals(before.unit);
  }

  private String[] move(
      Placement s, String kind, Place next, long t, boolean arrival, List<Row> deltas) {
    Place before = s.place;
    remember(s, kind, before);
    s.place = next;
    if (before != null && next != null && before.sameUnit(next)) return out("applied", null);
    if (before != null) {
      int discharged = next == null ? 1 : 0;
      deltas.add(delta(before, t, -1, 0, discharged, 0, 1 - discharged, 0));
    }
    if (next != null) {
      deltas.add(delta(next, t, 1, arrival ? 1 : 0, 0, arrival ? 0 : 1, 0, 0));
    }
    return out("applied", null);
  }

  /** Appends a placement change to the history cancels read (the latest HISTORY kept). */
  private static void remember(Placement s, String kind, Place before) {
    Change c = new Change();
    c.kind = kind;
    c.before = before;
    Change[] h = append(s.history, c, Change[]::new);
    s.history = h.length > HISTORY ? Arrays.copyOfRange(h, h.length - HISTORY, h.length) : h;
  }

  /** A merge's half (merged_away: the bed freed; merged_in: placed): occupancy only. */
  private String[] merge(Placement s, String kind, Place next, long t, List<Row> deltas) {
    Place before = s.place;
    remember(s, kind, before);
    s.place = next;
    between(before, next, t, 0, deltas);
    return out("applied", null);
  }

  /** The stay never was (a cancelled admission): its bed is freed, its history gone. */
  private String[] voidStay(Placement s, Visit v, long t, List<Row> deltas) {
    Place voided = s.place;
    s.place = null;
    s.history = new Change[0];
    v.stay = null;
    between(voided, null, t, 1, deltas);
    return out("applied", null);
  }

  /** A FHIR Encounter entered-in-error: its stay voided, strictly bound (udfs.census). */
  private String[] voidEncounter(
      Placement s, Visit v, String encounter, long t, List<Row> deltas) {
    if (s.place == null) return out("nothing_to_cancel", "the patient holds no bed");
    if (v.stay == null || !notEmpty(encounter)) {
      return out("nothing_to_cancel", "which encounter placed the patient is not known");
    }
    if (!v.stay.equals(encounter)) {
      return out("nothing_to_cancel", "the patient's stay is another encounter's");
    }
    return voidStay(s, v, t, deltas);
  }

  private String[] cancel(
      Placement s, Visit v, String what, long t, Place named, List<Row> deltas) {
    Change[] h = s.history == null ? new Change[0] : s.history;
    boolean openStay = false;
    for (Change c : h) openStay |= c.kind.equals("admit");
    if (what.equals("admit") && s.place != null && openStay) return voidStay(s, v, t, deltas);
    if (h.length == 0 || !h[h.length - 1].kind.equals(what)) {
      String last = h.length == 0 ? "none" : h[h.length - 1].kind;
      return out("nothing_to_cancel", "latest placement change is " + last + ", not " + what);
    }
    Place before = h[h.length - 1].before;
    // an A13 names where the patient is after it (udfs.census): the old bed may be another's
    if (what.equals("discharge") && named != null) before = named;
    s.history = Arrays.copyOf(h, h.length - 1);
    Place now = s.place;
    s.place = before;
    between(now, before, t, 1, deltas);
    return out("applied", null);
  }

  /** Occupancy-only deltas for a correction (no arrivals, discharges or transfers counted). */
  private void between(Place old, Place next, long t, int cancels, List<Row> deltas) {
    if (old != null && next != null && old.sameUnit(next)) return;
    if (old != null) deltas.add(delta(old, t, -1, 0, 0, 0, 0, cancels));
    if (next != null) deltas.add(delta(next, t, 1, 0, 0, 0, 0, cancels));
  }

  // --- rows -----------------------------------------------------------------------------------

  private Row delta(
      Place p, long t, int occupied, int arrivals, int discharges, int in, int out, int cancels) {
    Row r = Row.withNames();
    r.setField("kind", "delta");
    r.setField("facility_id", p.facility);
    r.setField("unit_id", p.unit);
    r.setField("event_time_ms", t);
    r.setField("occupied", occupied);
    r.setField("arrivals", arrivals);
    r.setField("discharges", discharges);
    r.setField("transfers_in", in);
    r.setField("transfers_out", out);
    r.setField("cancels", cancels);
    return r;
  }

  private Row eventRow(String kind, Pending e, String facility, String unit, String[] outcome) {
    Row r = Row.withNames();
    r.setField("kind", kind);
    r.setField("facility_id", facility);
    r.setField("unit_id", unit);
    r.setField("event_time_ms", e.timeMs);
    r.setField("event_id", e.eventId);
    r.setField("event_type", e.eventType);
    r.setField("outcome", outcome[0]);
    r.setField("reason", outcome[1]);
    r.setField("source_topic", e.topic);
    r.setField("source_partition", e.partition);
    r.setField("source_offset", e.offset);
    r.setField("payload", e.payload);
    return r;
  }

  // --- helpers --------------------------------------------------------------------------------

  private static String[] out(String status, String reason) {
    return new String[] {status, reason == null || reason.isEmpty() ? null : reason};
  }

  private static boolean notEmpty(String s) {
    return s != null && !s.isEmpty();
  }

  /** An empty encounter token is none (as udfs.census's `or None`). */
  private static String orNull(String s) {
    return notEmpty(s) ? s : null;
  }

  private static <T> T[] append(T[] a, T x, java.util.function.IntFunction<T[]> make) {
    T[] b = a == null ? make.apply(1) : Arrays.copyOf(a, a.length + 1);
    b[b.length - 1] = x;
    return b;
  }
}
