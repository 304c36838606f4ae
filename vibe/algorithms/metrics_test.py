"""Tests for vibe.algorithms.metrics: episode totals, and the reduction of a chunk's sums to a log row."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms import metrics
from vibe.algorithms.metrics import Metrics


def _totals(loss: float, ret: float, length: float, count: float) -> Metrics:
    return Metrics(
        per_update={"loss/total": jnp.float32(loss)},
        episode_sums={"return": jnp.float32(ret), "length": jnp.float32(length)},
        episode_count=jnp.float32(count),
    )


def test_from_episodes_sums_the_completed_episodes():
    # [t=2, n=2] EpisodeStats info: returns and lengths are 0 where no episode ended.
    info = {
        "episode_return": jnp.array([[0.0, 3.0], [5.0, 0.0]]),
        "episode_length": jnp.array([[0, 3], [5, 0]], jnp.int32),
        "done": jnp.array([[False, True], [True, False]]),
    }
    out = metrics.from_episodes({"loss/q": jnp.float16(0.5), "epsilon": 1}, info)
    assert out.per_update == {"loss/q": 0.5, "epsilon": 1.0}
    assert {k: float(v) for k, v in out.episode_sums.items()} == {"return": 8.0, "length": 8.0}
    assert float(out.episode_count) == 2.0
    assert all(v.shape == () and v.dtype == jnp.float32 for v in jax.tree.leaves(out))


def test_summarize_means_per_update_and_per_episode():
    # The sums of 4 updates: losses average over the updates, returns and lengths over the 5 episodes.
    row = metrics.summarize(_totals(loss=2.0, ret=50.0, length=120.0, count=5.0), num_updates=4)
    assert row == {
        "loss/total": 0.5,
        "episode/count": 5.0,
        "episode/return_mean": 10.0,
        "episode/length_mean": 24.0,
    }


def test_summarize_leaves_out_the_episode_means_when_no_episode_ended():
    row = metrics.summarize(_totals(loss=3.0, ret=0.0, length=0.0, count=0.0), num_updates=3)
    assert row == {"loss/total": 1.0, "episode/count": 0.0}  # a count of 0, no mean of nothing


def test_summarize_of_an_update_without_envs_has_no_episode_keys():
    totals = metrics.without_episodes({"loss/bc": jnp.float32(6.0)})
    assert metrics.summarize(totals, num_updates=2) == {"loss/bc": 3.0}


def test_a_chunk_sums_then_summarize_gives_the_means():
    # What the train chunk does: add K updates' metrics leaf by leaf, then summarize once.
    steps = [_totals(1.0, 10.0, 10.0, 1.0), _totals(3.0, 0.0, 0.0, 0.0), _totals(2.0, 40.0, 30.0, 2.0)]
    totals = jax.tree.map(lambda *xs: sum(xs), *steps)
    row = metrics.summarize(totals, num_updates=3)
    assert row == pytest.approx(
        {"loss/total": 2.0, "episode/count": 3.0, "episode/return_mean": 50 / 3, "episode/length_mean": 40 / 3}
    )


def test_summarize_seeds_averages_over_the_seeds_that_have_a_value():
    # Two seeds' sums (a leading seed axis); seed 1 finished no episode in the chunk.
    totals = jax.tree.map(lambda a, b: jnp.stack([a, b]), _totals(2.0, 30.0, 60.0, 3.0), _totals(4.0, 0.0, 0.0, 0.0))
    row = metrics.summarize_seeds(totals, num_updates=2)
    assert row["loss/total"] == 1.5 and row["loss/total/seeds"] == [1.0, 2.0]
    assert row["episode/count"] == 1.5 and row["episode/count/seeds"] == [3.0, 0.0]
    # The mean return is seed 0's alone; the per-seed list says seed 1 has none.
    assert row["episode/return_mean"] == 10.0 and row["episode/return_mean/seeds"] == [10.0, None]
    assert row["episode/length_mean"] == 20.0 and row["episode/length_mean/seeds"] == [20.0, None]
    assert set(row) == {
        f"{k}{s}"
        for k in ("loss/total", "episode/count", "episode/return_mean", "episode/length_mean")
        for s in ("", "/seeds")
    }


def test_summarize_seeds_of_one_seed_is_summarize():
    totals = _totals(2.0, 30.0, 60.0, 3.0)
    one = metrics.summarize_seeds(jax.tree.map(lambda x: x[None], totals), num_updates=2)
    assert {k: v for k, v in one.items() if not k.endswith("/seeds")} == metrics.summarize(totals, 2)
    assert all(np.isscalar(v) for k, v in one.items() if not k.endswith("/seeds"))
