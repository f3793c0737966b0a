"""Stream features pushed to a real Feast online store (SQLite) from a process of their own:
it is ready (feast imported, the store open) before the first push, every push is answered, a
frame handed over is pushed even when its caller dies before the answer, a failed one comes
back as an error with the rows kept, a push process that dies or stops answering is ended and
started again (not more often than its interval), and closing ends it."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from feature_store import repo
from feature_store.definitions import STREAM_FEATURES
from feature_store.push_worker import PushProcess
from udfs.scoring import FeatureSource

T0 = pd.Timestamp("2026-01-05 08:00", tz="UTC")


class _Unpickled:
    """Calls `fn(*args)` where it is unpickled, i.e. in the push process: a crash or a hang
    in the middle of a frame, followed by a megabyte the process never reads."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.call = (fn, args)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.call

    def frame(self) -> pd.DataFrame:
        return cast(pd.DataFrame, (self, b"x" * (1 << 20)))


def _features(tokens: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"patient_token": tokens, "event_timestamp": T0})
    for f in STREAM_FEATURES:
        frame[f] = rng.uniform(0, 100, len(tokens)).astype("float32")
    return frame


def _online(store_dir: Path, tokens: list[str]) -> pd.DataFrame:
    store = repo.open_store(store_dir, "sqlite")
    got = store.get_online_features(
        features=[f"{repo.STREAM_VIEW}:{f}" for f in STREAM_FEATURES],
        entity_rows=[{"patient_token": t} for t in tokens],
    ).to_df()
    frame: pd.DataFrame = got.set_index("patient_token").loc[tokens, list(STREAM_FEATURES)]
    return frame


def _push_again_after_a_restart(pusher: PushProcess, store_dir: Path) -> None:
    """The next push starts a second push process, and its frame reaches the online store."""
    frame = _features(["p1"], seed=99).assign(event_timestamp=T0 + pd.Timedelta(minutes=1))
    pusher(frame)
    assert pusher.starts == 2
    got = _online(store_dir, ["p1"])
    np.testing.assert_allclose(got.to_numpy(np.float32), frame[list(STREAM_FEATURES)])


@pytest.fixture()
def pushers() -> Iterator[Callable[..., PushProcess]]:
    """`PushProcess(...)`, each closed when the test ends (closing twice is harmless)."""
    made: list[PushProcess] = []

    def make(*args: Any, **kwargs: Any) -> PushProcess:
        made.append(PushProcess(*args, **kwargs))
        return made[-1]

    yield make
    for pusher in made:
        pusher.close()


@pytest.fixture()
def store_dir(tmp_path: Path) -> Path:
    repo.open_store(tmp_path / "feast", "sqlite")  # applied once, as the job's open() does
    return tmp_path / "feast"


def test_a_pushed_frame_is_in_the_online_store_when_the_push_returns(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    frame = _features(["p1", "p2", "p3"], seed=1)
    pusher(frame)
    got = _online(store_dir, ["p1", "p2", "p3"])
    np.testing.assert_allclose(got.to_numpy(np.float32), frame[list(STREAM_FEATURES)])
    newer = _features(["p2"], seed=2).assign(event_timestamp=T0 + pd.Timedelta(minutes=1))
    pusher(newer)
    np.testing.assert_allclose(
        _online(store_dir, ["p2"]).to_numpy(np.float32), newer[list(STREAM_FEATURES)]
    )
    assert pusher.starts == 1


def test_a_started_push_process_has_opened_the_store_before_the_first_push(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    pusher.start()
    pusher.wait_ready()
    frame = _features(["p1"], seed=13)
    pusher(frame)  # to the process started above, not a second one
    assert pusher.starts == 1
    np.testing.assert_allclose(
        _online(store_dir, ["p1"]).to_numpy(np.float32), frame[list(STREAM_FEATURES)]
    )


def test_frames_handed_over_are_pushed_even_when_the_caller_dies_before_the_answer(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    """What a job's last push relies on: Flink ends a Python worker seconds into `close()`."""
    pusher = pushers(store_dir, "sqlite")
    pusher.start()
    pusher.wait_ready()
    proc = pusher.proc
    assert proc is not None and proc.stdin is not None
    first, last = _features(["p1", "p2"], seed=14), _features(["p3"], seed=15)
    for frame in (first, last):  # written as a push writes them; no answer is read
        pickle.dump(frame, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    proc.stdin.close()  # what the caller's death does to the pipe
    assert proc.wait(120) == 0
    got = _online(store_dir, ["p1", "p2", "p3"])
    np.testing.assert_allclose(
        got.to_numpy(np.float32), pd.concat([first, last])[list(STREAM_FEATURES)]
    )


def test_a_frame_cut_off_by_the_callers_death_is_not_pushed_and_the_process_ends(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    pusher.wait_ready()
    proc = pusher.proc
    assert proc is not None and proc.stdin is not None
    whole, cut = _features(["p1"], seed=16), _features(["p2"], seed=17)
    pickle.dump(whole, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    proc.stdin.write(pickle.dumps(cut, protocol=pickle.HIGHEST_PROTOCOL)[:100])
    proc.stdin.close()
    assert proc.wait(120) == 0
    got = _online(store_dir, ["p1", "p2"])
    np.testing.assert_allclose(got.loc[["p1"]].to_numpy(np.float32), whole[list(STREAM_FEATURES)])
    assert got.loc["p2"].isna().all()


def test_a_push_process_that_cannot_open_the_store_does_not_get_ready(
    tmp_path: Path, pushers: Callable[..., PushProcess]
) -> None:
    not_a_dir = tmp_path / "feast"
    not_a_dir.write_text("")
    pusher = pushers(not_a_dir, "sqlite")
    pusher.start()
    with pytest.raises(ConnectionError, match="died"):
        pusher.wait_ready()
    assert pusher.proc is None
    pusher.close()


def test_a_push_that_fails_in_the_push_process_is_a_failure_and_its_rows_wait_for_the_next_push(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    source = FeatureSource(
        lookup=lambda _: pd.DataFrame(), push=pusher, push_interval_s=0.0, release=pusher.close
    )
    frame = _features(["p1", "p2"], seed=3)
    source.stage(frame.drop(columns=[STREAM_FEATURES[0]]))  # the push cannot build its rows
    assert source.failures == 1
    assert len(source.staged) == 1 and pusher.proc is not None  # kept; the process lives on
    source.staged = [frame]
    source.close()
    assert source.failures == 1 and source.staged == [] and pusher.proc is None
    got = _online(store_dir, ["p1", "p2"])
    np.testing.assert_allclose(got.to_numpy(np.float32), frame[list(STREAM_FEATURES)])


def test_a_push_process_that_died_is_started_again_by_the_next_push(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite", restart_interval_s=0.0)
    pusher(_features(["p1"], seed=4))
    assert pusher.proc is not None
    pusher.proc.kill()
    pusher.proc.wait()
    _push_again_after_a_restart(pusher, store_dir)


def test_closing_the_push_process_ends_it(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    pusher(_features(["p1"], seed=6))
    proc = pusher.proc
    assert proc is not None
    pusher.close()
    assert proc.returncode == 0 and pusher.proc is None
    pusher.close()  # twice is harmless


def test_a_push_process_that_dies_while_taking_a_frame_is_a_connection_error(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite", restart_interval_s=0.0)
    pusher(_features(["p1"], seed=7))
    with pytest.raises(ConnectionError, match="died"):
        pusher(_Unpickled(os._exit, 3).frame())
    assert pusher.proc is None  # reaped, its pipes closed
    _push_again_after_a_restart(pusher, store_dir)


def test_a_push_process_that_does_not_answer_in_time_is_ended(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    pusher(_features(["p1"], seed=9))  # started (importing feast) and answering
    pusher.reply_timeout_s = 1.0
    hung = pusher.proc
    assert hung is not None
    with pytest.raises(TimeoutError):
        pusher(cast(pd.DataFrame, _Unpickled(time.sleep, 60)))
    assert hung.returncode is not None and pusher.proc is None


def test_a_push_process_is_not_started_again_sooner_than_its_restart_interval(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite", restart_interval_s=3600.0)
    pusher(_features(["p1"], seed=10))
    with pytest.raises(ConnectionError):
        pusher(_Unpickled(os._exit, 3).frame())
    with pytest.raises(ConnectionError, match="started again in"):
        pusher(_features(["p1"], seed=11))
    assert pusher.starts == 1 and pusher.proc is None


def test_the_push_process_loads_neither_torch_nor_onnxruntime(
    store_dir: Path, pushers: Callable[..., PushProcess]
) -> None:
    pusher = pushers(store_dir, "sqlite")
    pusher(_features(["p1"], seed=12))
    assert pusher.proc is not None
    maps = Path(f"/proc/{pusher.proc.pid}/maps").read_text()
    assert "onnxruntime" not in maps and "libtorch" not in maps
