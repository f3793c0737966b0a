"""What the benchmarks compute from an output topic's sampled end offsets (bench/sampling.py)."""

from __future__ import annotations

from bench.sampling import decile_rates, sustained_rate


def _samples(rate_at: list[tuple[float, float]], seconds: float) -> list[tuple[float, int]]:
    """End offsets every 0.2 s of a job that starts producing at `rate_at[0][0]` s, at each
    (from second, records/s) step's rate."""
    out, count, t = [], 0.0, 0.0
    while t <= seconds:
        rate = max((r for since, r in rate_at if since <= t), default=0.0)
        out.append((round(t, 1), int(count)))
        count += rate * 0.2
        t += 0.2
    return out


def test_a_job_at_a_steady_rate_has_that_rate_in_every_tenth_and_sustained() -> None:
    s = _samples([(5.0, 1000.0)], 60.0)
    assert abs(sustained_rate(s, 50_000) - 1000) < 10
    assert all(abs(r - 1000) <= 50 for r in decile_rates(s, 50_000))  # sampled every 0.2 s


def test_a_warm_up_shows_in_the_first_tenths_and_not_in_the_last() -> None:
    s = _samples([(5.0, 200.0), (15.0, 1000.0)], 80.0)  # 2,000 records slowly, then at speed
    tenths = decile_rates(s, 42_000)
    # the first tenth (4,200 records) took the slow 10 s and 2.2 s at speed
    assert 300 < tenths[0] < 400 and all(abs(r - 1000) <= 50 for r in tenths[1:])
