// The alert lifecycle in the JVM: udfs/lifecycle.py's PatientAlerts as a Flink process table
// function, one virtual processor per patient. udfs/java_decode.py compiles it into the UDF jar
// and fills in the output type (udfs.lifecycle.LIFECYCLE_OUT: schemas.rows.ALERT_EVENT without
// the partition key), the severity ranks and the quiet period.
//
// Called as (udfs.lifecycle.lifecycle_sql)
//   wf_alert_lifecycle(input => TABLE t PARTITION BY patient_token, on_time => DESCRIPTOR(rowtime),
//                      uid => 'alert-lifecycle')
// on schemas.rows.RULE_HIT rows (read by name): rule hits and discharges, each at its rowtime.
// An input waits in list state until the watermark passes its time (a timer at that time), so
// the outcome does not depend on arrival order; then the due inputs are applied in
// udfs.lifecycle.order_key order: event time, hits before a discharge, then by their records.
// Per rule: the first hit raises an alert, later hits are suppressed into it (counted) unless of
// a higher severity, which escalates it; it resolves `quiet` after its last hit (a timer at that
// deadline), or at a discharge. The open alerts, in the order they were raised, are the
// patient's value state; when there are none and nothing waits, all state is cleared. Neither
// state has a TTL: the timers empty them. Ids are deterministic (md5 as udfs.lifecycle.alert_id),
// so a replay from a checkpoint yields the same events.
package io.wardflow.udf;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.apache.flink.table.annotation.ArgumentHint;
import org.apache.flink.table.annotation.ArgumentTrait;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.annotation.StateHint;
import org.apache.flink.table.api.dataview.ListView;
import org.apache.flink.table.functions.ProcessTableFunction;
import org.apache.flink.table.functions.ProcessTableFunction.TimeContext;
import org.apache.flink.types.Row;

@FunctionHint(output = @DataTypeHint("@OUTPUT@"))
public class AlertLifecycle extends ProcessTableFunction<Row> {
  static final long QUIET_MS = @QUIET_MS@L;
  static final Map<String, Integer> SEVERITY_RANK = new HashMap<>();

  static {
    @SEVERITY_RANKS@
  }

  static final DateTimeFormatter ISO =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

  /** A rule hit, or a discharge (`discharge`), at its event time `atMs` (udfs.lifecycle.Hit). */
  public static class Input {
    public long atMs;
    public boolean discharge;
    public String ruleId;
    public String ruleVersion;
    public String severity;
    public String patientToken;
    public String facilityId;
    public String unitId;
    public String firstRecordId;
    public String lastRecordId;
    public String scoreName;
    public Integer scoreValue; // null stays null, as in udfs.lifecycle
    public String evidenceJson;
  }

  /** One rule's open alert (udfs.lifecycle.OpenAlert). */
  public static class Open {
    public String alertId;
    public long openedMs;
    public String severity;
    public long lastHitMs;
    public int hits;
    public int seq;
    public Input last;
  }

  /** The patient's open alerts, in the order they were raised. */
  public static class Alerts {
    public Open[] open;
  }

  static final Comparator<String> NULLS_FIRST = Comparator.nullsFirst(Comparator.naturalOrder());

  /** udfs.lifecycle.order_key; a null record id (the job's SQL gives none) sorts first. */
  static final Comparator<Input> ORDER =
      Comparator.<Input>comparingLong(i -> i.atMs)
          .thenComparingInt(i -> i.discharge ? 1 : 0)
          .thenComparing(i -> i.discharge ? "" : i.lastRecordId, NULLS_FIRST)
          .thenComparing(i -> i.discharge ? "" : i.firstRecordId, NULLS_FIRST);

  public void eval(
      Context ctx,
      @StateHint(name = "alerts", ttl = "0 ms") Alerts alerts,
      @StateHint(name = "pending", ttl = "0 ms") ListView<Input> pending,
      @ArgumentHint(
              name = "input",
              value = {ArgumentTrait.SET_SEMANTIC_TABLE, ArgumentTrait.REQUIRE_ON_TIME})
          Row input)
      throws Exception {
    TimeContext<Long> time = ctx.timeContext(Long.class);
    long t = time.time();
    pending.add(input(input, t));
    EventTimers.registerNoEarlierThanNext(time, t);
  }

  public void onTimer(OnTimerContext ctx, Alerts alerts, ListView<Input> pending)
      throws Exception {
    TimeContext<Long> time = ctx.timeContext(Long.class);
    // Everything up to the watermark: it may have passed several of the patient's times at
    // once (at the end of a bounded input it is the end of time), and Flink ignores a timer
    // registered at or behind it, so a deadline it passed must be applied now.
    Long watermark = time.currentWatermark();
    long now = watermark == null ? time.time() : Math.max(time.time(), watermark);
    List<Input> due = new ArrayList<>();
    List<Input> later = new ArrayList<>();
    for (Input i : pending.get()) (i.atMs <= now ? due : later).add(i);
    due.sort(ORDER);
    List<Open> open =
        alerts.open == null ? new ArrayList<>() : new ArrayList<>(Arrays.asList(alerts.open));
    List<Row> out = new ArrayList<>();
    for (Input i : due) {
      advance(open, i.atMs, out);
      if (i.discharge) {
        for (Open a : open) out.add(event(a, "resolve", i.atMs, "discharged"));
        open.clear();
      } else {
        hit(open, i, out);
      }
    }
    advance(open, now, out);
    for (Open a : open) time.registerOnTime(a.lastHitMs + QUIET_MS); // each after `now`
    if (open.isEmpty() && later.isEmpty()) {
      ctx.clearAllState();
    } else {
      alerts.open = open.toArray(new Open[0]);
      if (!due.isEmpty()) {
        pending.clear();
        pending.addAll(later);
      }
    }
    for (Row r : out) collect(r);
  }

  /** Resolve every open alert whose quiet period ended at or before `nowMs`. */
  static void advance(List<Open> open, long nowMs, List<Row> out) {
    for (Iterator<Open> it = open.iterator(); it.hasNext(); ) {
      Open a = it.next();
      if (a.lastHitMs + QUIET_MS <= nowMs) {
        out.add(event(a, "resolve", a.lastHitMs + QUIET_MS, "condition_cleared"));
        it.remove();
      }
    }
  }

  /** A hit (after `advance` to its time): raise, suppress or escalate its rule's alert. */
  static void hit(List<Open> open, Input h, List<Row> out) {
    Open a = null;
    for (Open o : open) {
      if (Objects.equals(o.last.ruleId, h.ruleId)) a = o;
    }
    if (a == null) {
      a = new Open();
      a.alertId = alertId(h.ruleId, h.patientToken, h.atMs);
      a.openedMs = h.atMs;
      a.severity = h.severity;
      a.lastHitMs = h.atMs;
      a.hits = 1;
      a.last = h;
      open.add(a);
      out.add(event(a, "raise", h.atMs, null));
      return;
    }
    if (Objects.equals(h.lastRecordId, a.last.lastRecordId) && h.atMs == a.lastHitMs) {
      return; // the same completing record again (re-sent, or another start): no news
    }
    a.hits += 1;
    a.lastHitMs = Math.max(a.lastHitMs, h.atMs);
    a.last = h;
    if (rank(h.severity) > rank(a.severity)) {
      a.severity = h.severity;
      out.add(event(a, "escalate", h.atMs, null));
    }
  }

  /** A severity the table does not know (the rules emit none) ranks lowest: it never
   * escalates, where udfs.lifecycle would fail. */
  static int rank(String severity) {
    return severity == null ? 0 : SEVERITY_RANK.getOrDefault(severity, 0);
  }

  /** An alert event (schemas.rows.ALERT_EVENT, less the partition key) of `a`'s next number. */
  static Row event(Open a, String action, long atMs, String reason) {
    a.seq += 1;
    Input h = a.last;
    Row r = Row.withNames();
    r.setField("alert_event_id", md5(a.alertId + "|" + a.seq));
    r.setField("alert_id", a.alertId);
    r.setField("action", action);
    r.setField("sequence", a.seq);
    r.setField("rule_id", h.ruleId);
    r.setField("rule_version", h.ruleVersion);
    r.setField("severity", a.severity);
    r.setField("facility_id", h.facilityId);
    r.setField("unit_id", h.unitId);
    r.setField("opened_time_ms", a.openedMs);
    r.setField("event_time_ms", atMs);
    r.setField("resolve_reason", reason);
    r.setField("hit_count", a.hits);
    r.setField("score_name", h.scoreName);
    r.setField("score_value", h.scoreValue);
    r.setField("first_record_id", h.firstRecordId);
    r.setField("last_record_id", h.lastRecordId);
    r.setField("evidence_json", h.evidenceJson);
    return r;
  }

  /** udfs.lifecycle.alert_id: md5 of rule, patient and the opening time (ISO, milliseconds). */
  static String alertId(String ruleId, String patientToken, long openedMs) {
    return md5(ruleId + "|" + patientToken + "|" + ISO.format(Instant.ofEpochMilli(openedMs)));
  }

  static String md5(String s) {
    try {
      byte[] d = MessageDigest.getInstance("MD5").digest(s.getBytes(StandardCharsets.UTF_8));
      StringBuilder hex = new StringBuilder(32);
      for (byte b : d) hex.append(String.format("%02x", b));
      return hex.toString();
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  static Input input(Row r, long atMs) {
    Input i = new Input();
    i.atMs = atMs;
    i.discharge = "discharge".equals(r.getFieldAs("kind"));
    i.ruleId = r.getFieldAs("rule_id");
    i.ruleVersion = r.getFieldAs("rule_version");
    i.severity = r.getFieldAs("severity");
    i.patientToken = r.getFieldAs("patient_token");
    i.facilityId = r.getFieldAs("facility_id");
    i.unitId = r.getFieldAs("unit_id");
    i.firstRecordId = r.getFieldAs("first_record_id");
    i.lastRecordId = r.getFieldAs("last_record_id");
    i.scoreName = r.getFieldAs("score_name");
    i.scoreValue = r.getFieldAs("score_value");
    i.evidenceJson = r.getFieldAs("evidence_json");
    return i;
  }
}
