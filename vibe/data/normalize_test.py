import json

import numpy as np
import pytest

from vibe.data import normalize


def _stream(x: np.ndarray, batch: int, **kwargs) -> normalize.NormStats:
    stats = normalize.RunningStats(**kwargs)
    for start in range(0, len(x), batch):
        stats.update(x[start : start + batch])
    return stats.get()


def test_small_input_is_exact():
    x = np.random.default_rng(0).normal(size=(101, 3)).astype(np.float32)
    got = _stream(x, batch=10)
    np.testing.assert_array_equal(got.q01, np.quantile(x, 0.01, axis=0))
    np.testing.assert_array_equal(got.q99, np.quantile(x, 0.99, axis=0))
    np.testing.assert_allclose(got.mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(got.std, x.astype(np.float64).std(0), rtol=1e-12)


def test_leading_axes_are_samples():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # e.g. [batch, horizon, d]
    got = _stream(x, batch=1)
    flat = x.reshape(-1, 4)
    np.testing.assert_allclose(got.mean, flat.mean(0))
    np.testing.assert_array_equal(got.q99, np.quantile(flat, 0.99, axis=0))


def test_million_drifting_samples_match_numpy():
    """1M×32 float32 whose range widens over time (where openpi's rebinning loses counts)."""
    rng = np.random.default_rng(1)
    n, d = 1_000_000, 32
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    x = (rng.standard_normal((n, d), dtype=np.float32) * (0.1 + 5 * t) + 10 * t * np.arange(d)).astype(np.float32)
    got = _stream(x, batch=256)
    span = x.max(0).astype(np.float64) - x.min(0)
    exact = np.quantile(x, [0.01, 0.99], axis=0)  # one sort for both
    for value, want in ((got.q01, exact[0]), (got.q99, exact[1])):
        assert np.max(np.abs(value - want) / span) < 1e-3
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(got.mean, x64.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.std, x64.std(0), rtol=1e-6)


def test_histogram_merging_keeps_every_count():
    stats = normalize.RunningStats(exact_cap=10, bins=8, flush_rows=1)
    stats.update(np.zeros((11, 1)))
    stats.update(np.full((5, 1), 100.0))
    stats.update(np.full((5, 1), -1000.0))
    stats._process()
    assert stats._hist is not None and stats._hist.sum() == 21
    got = stats.get()
    assert got.q01[0] == pytest.approx(-1000.0, abs=2 * 1100 / 8)


def test_constant_dimension():
    x = np.stack([np.full(200_000, 3.5), np.arange(200_000.0)], axis=1)
    got = _stream(x, batch=4096)
    assert got.std[0] == 0.0 and got.mean[0] == 3.5
    assert got.q01[0] == got.q99[0] == 3.5


def test_json_round_trip_and_openpi_layout(tmp_path):
    stats = {"state": normalize.NormStats(np.array([1.0, 2.0]), np.array([0.5, 0.0]), np.zeros(2), np.ones(2))}
    path = normalize.save(stats, str(tmp_path))
    loaded = normalize.load(str(tmp_path))
    np.testing.assert_array_equal(loaded["state"].std, [0.5, 0.0])
    np.testing.assert_array_equal(loaded["state"].q99, [1.0, 1.0])
    with open(path) as f:
        assert json.load(f)["norm_stats"]["state"]["q01"] == [0.0, 0.0]

    # A file as openpi writes it: null quantiles are allowed.
    openpi = {"norm_stats": {"actions": {"mean": [0.1], "std": [1.0], "q01": None, "q99": None}}}
    (tmp_path / "openpi").mkdir()
    (tmp_path / "openpi" / "norm_stats.json").write_text(json.dumps(openpi, indent=2))
    loaded = normalize.load(str(tmp_path / "openpi" / "norm_stats.json"))
    assert loaded["actions"].q01 is None and loaded["actions"].mean.tolist() == [0.1]


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="compute_norm_stats"):
        normalize.load(str(tmp_path))
    stats = normalize.RunningStats()
    with pytest.raises(ValueError, match="before any update"):
        stats.get()
    stats.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="earlier batches had 3"):
        stats.update(np.zeros((2, 4)))
