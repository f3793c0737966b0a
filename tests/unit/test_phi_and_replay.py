from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from jobs.feeds import replay
from schemas import phi
from schemas.settings import Settings

KEY = b"unit-test-key"


def test_tokens_are_stable_keyed_and_do_not_contain_the_identifier() -> None:
    a = phi.token(KEY, "physionet", "p000001")
    assert a == phi.token(KEY, "physionet", "p000001")
    assert a != phi.token(b"other-key", "physionet", "p000001")
    assert a != phi.token(KEY, "mimic", "p000001")
    assert "p000001" not in a and "000001" not in a


def test_replay_maps_rows_to_observations_in_event_time_order() -> None:
    df = pd.read_parquet(replay.SAMPLE)
    plan = replay.ReplayPlan(patients=5)
    sub = replay.select_patients(df, plan)
    obs = replay.observations(sub, plan, KEY, "physionet2019:sample")
    assert len(obs) == len(sub)
    times = [o["event_time"] for o in obs]
    assert times == sorted(times)
    assert not any(str(pid) in str(o) for pid in sub["patient_id"].unique() for o in obs[:50])
    first = sub.sort_values(["patient_id", "ICULOS"]).iloc[0]
    tok = phi.token(KEY, "physionet2019:sample", first["patient_id"])
    mine = [o for o in obs if o["patient_token"] == tok]
    assert mine[1]["event_time"] - mine[0]["event_time"] == timedelta(hours=1)
    hr = first["HR"]
    assert mine[0]["heart_rate_bpm"] == (None if pd.isna(hr) else float(hr))


def test_replay_falls_back_to_the_bundled_sample_without_the_data_set(tmp_path: Path) -> None:
    df, source = replay.load_physionet(None, Settings(data_dir=tmp_path))
    assert source.endswith("sample") and df["patient_id"].nunique() == 40


def test_sealed_payloads_open_only_with_the_key_and_the_same_context() -> None:
    from cryptography.exceptions import InvalidTag

    from schemas.phi import seal, unseal

    sealed = seal(b"k1", b"PID|1||MRN123^^^H^MR||DOE^JANE", "hl7_gateway")
    assert b"DOE" not in sealed and sealed != seal(b"k1", b"PID|1||MRN123", "hl7_gateway")
    assert unseal(b"k1", sealed, "hl7_gateway") == b"PID|1||MRN123^^^H^MR||DOE^JANE"
    with pytest.raises(InvalidTag):
        unseal(b"k2", sealed, "hl7_gateway")
    with pytest.raises(InvalidTag):
        unseal(b"k1", sealed, "fhir_ingest")


def test_what_fhir_ingestion_names_by_content_is_keyed_so_no_guess_gives_the_mrn_back(
    tmp_path: Path,
) -> None:
    """A file's source (in its records, its dead letters and the ingest's output) and an
    Observation without an id are named by content that holds the subject's record number: a
    plain SHA-256 of it gives the number back to whoever guesses it (a 7-digit MRN space in
    seconds). Keyed, another key names them otherwise, and the plain digests appear nowhere."""
    import hashlib
    import json

    from jobs.feeds import fhir_ingest
    from jobs.feeds.publisher import Publisher

    mrn = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "4455667"}
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"identifier": mrn},
        "effectiveDateTime": "2026-03-01T08:00:00Z",
        "valueQuantity": {"value": 88, "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    path = tmp_path / "MRN4455667.json"
    path.write_text(json.dumps(obs))
    named = {}
    for key in (KEY, b"other-key"):
        s = Settings.from_env({}, phi_key=key, payload_store=tmp_path / "payloads")
        source, [decision] = fhir_ingest.decide_file(s, Publisher(s, stage="t"), path, "F")
        [(_, record, _)] = decision.records
        named[key] = (source, record["observation_id"], record["source"])
    assert named[KEY] != named[b"other-key"]
    source, observation_id, in_record = named[KEY]
    assert in_record == source and source.startswith("fhir:file:")
    plain = [
        hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        hashlib.sha256(json.dumps(obs, sort_keys=True, separators=(",", ":")).encode()).hexdigest(),
    ]
    assert not any(p[:16] in text for p in plain for text in (source, observation_id))
    assert "4455667" not in source + observation_id
