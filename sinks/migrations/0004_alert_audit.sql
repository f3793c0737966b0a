-- Audit: every raised or escalated alert with the screened states it was computed from, each
-- traced to the input record (topic, partition, offset) that produced it. A pattern's inputs are
-- the patient's screened states from its first to its completing record; a single-state rule's,
-- that one state. Values carried forward into a state are in the state's *_measured_time
-- columns and in the alert's evidence_json. `python -m sinks.explain ALERT_ID` reads this view.

CREATE VIEW IF NOT EXISTS {db}.alert_audit AS
SELECT
    a.alert_id AS alert_id,
    a.alert_event_id AS alert_event_id,
    a.action AS action,
    a.sequence AS sequence,
    a.rule_id AS rule_id,
    a.rule_version AS rule_version,
    a.severity AS severity,
    a.patient_token AS patient_token,
    a.event_time AS alert_time,
    a.score_name AS score_name,
    a.score_value AS score_value,
    s.record_id AS input_record_id,
    s.record_kind AS input_kind,
    s.event_time AS input_time,
    s.record_id IN (a.first_record_id, a.last_record_id) AS pattern_end,
    s.news2_score AS news2_score,
    s.sirs_count AS sirs_count,
    s.qsofa_score AS qsofa_score,
    s.sofa_partial_score AS sofa_partial_score,
    s.source_topic AS source_topic,
    s.source_partition AS source_partition,
    s.source_offset AS source_offset
FROM (SELECT * FROM {db}.alert_events FINAL WHERE action IN ('raise', 'escalate')) AS a
INNER JOIN (SELECT record_id, event_time FROM {db}.sepsis_screen FINAL) AS f
    ON f.record_id = a.first_record_id
INNER JOIN (SELECT * FROM {db}.sepsis_screen FINAL) AS s
    ON s.patient_token = a.patient_token
WHERE s.event_time >= f.event_time AND s.event_time <= a.event_time;
