"""The sepsis champion's risk computed offline: the training code's hourly features of the same
patients through the registry's ONNX champion, indexed by the stream's record id
(`<patient token>:<ICU hour>`), to compare with what a job scored."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store.definitions import FEATURES
from schemas import phi
from schemas.settings import Settings
from training.features import hourly_features
from udfs.registry import Registry
from udfs.scoring import open_session


def champion_risk(chosen: pd.DataFrame, settings: Settings, source: str) -> pd.DataFrame:
    """Hourly features of `chosen` (PhysioNet rows) with the champion's `risk`."""
    offline = hourly_features(chosen)
    tokens = {p: phi.token(settings.phi_key, source, str(p)) for p in offline.patient_id.unique()}
    hours = zip(offline.patient_id, offline.iculos_h, strict=True)
    offline.index = [f"{tokens[p]}:{int(h)}" for p, h in hours]
    champion = Registry(settings.model_registry).role(settings.model_name, "champion")
    assert champion is not None, "the registry has no champion"
    x = offline[list(FEATURES)].to_numpy(dtype=np.float32)
    offline["risk"] = open_session(champion.onnx).run(None, {"features": x})[0]
    return offline
