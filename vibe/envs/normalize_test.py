"""Tests for vibe.envs.normalize: Chan merge against numpy, the normalisation formula, the wrapper."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.envs import gymnax_env, normalize, wrappers

EPS = normalize.EPSILON_COUNT


def _pooled(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """By hand: mean/var of the observations pooled with the prior (mean 0, var 1, weight EPS), float64."""
    x = observations.astype(np.float64)
    count = EPS + len(x)
    mean = x.sum(axis=0) / count  # the prior adds EPS * 0
    # The prior is a mass EPS at 0 with variance 1: its second moment about `mean` is EPS * (1 + mean^2).
    var = (EPS * (1.0 + mean**2) + ((x - mean) ** 2).sum(axis=0)) / count
    return mean, var, count


def test_running_stats_equal_the_pooled_mean_and_var_of_all_batches():
    rng = np.random.default_rng(0)
    # Batches of different sizes and leading axes ([n, obs] and [t, n, obs]); features on different scales.
    batches = [
        rng.normal([5.0, -3.0], [2.0, 0.1], (4, 2)),
        rng.normal([5.0, -3.0], [2.0, 0.1], (3, 2, 2)),
        rng.normal([6.0, -2.0], [1.0, 0.5], (1, 2)),
        rng.normal([4.0, -3.0], [3.0, 0.2], (7, 2)),
    ]
    stats = normalize.init_stats((2,))
    seen = []
    for batch in batches:
        stats = normalize.update_stats(stats, jnp.asarray(batch, jnp.float32))
        seen.append(batch.reshape(-1, 2).astype(np.float32))
    mean, var, count = _pooled(np.concatenate(seen))
    assert stats.mean.dtype == stats.var.dtype == stats.count.dtype == jnp.float32
    np.testing.assert_allclose(stats.count, count, rtol=1e-6)  # 4 + 6 + 1 + 7 = 18 observations + 1e-4
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(stats.var, var, rtol=1e-4)
    # Without the prior the variance of feature 1 (std ~0.1-0.5) would differ: the prior is really included.
    assert not np.allclose(np.var(np.concatenate(seen), axis=0), np.asarray(stats.var), rtol=1e-6, atol=0)


def test_one_tiny_batch_by_hand():
    # One batch [1, 3]: count 2 + e, mean 4 / (2 + e), var (e (1 + m^2) + (1 - m)^2 + (3 - m)^2) / (2 + e).
    stats = normalize.update_stats(normalize.init_stats(()), jnp.array([1.0, 3.0]))
    m = 4.0 / (2.0 + EPS)
    np.testing.assert_allclose(stats.mean, m, rtol=1e-6)
    np.testing.assert_allclose(stats.var, (EPS * (1 + m**2) + (1 - m) ** 2 + (3 - m) ** 2) / (2 + EPS), rtol=1e-6)
    np.testing.assert_allclose(stats.count, 2.0001, rtol=1e-7)


def test_normalize_hand_computed_and_clipped():
    stats = normalize.RunningMeanStd(
        mean=jnp.array([1.0, -2.0, 0.0]), var=jnp.array([4.0, 0.25, 0.0]), count=jnp.float32(10.0)
    )
    obs = jnp.array([[3.0, -2.5, 5.0], [1.0, -2.0, 0.0]])
    # (3 - 1) / 2 = 1; (-2.5 + 2) / 0.5 = -1; 5 / sqrt(1e-8) = 5e4, clipped to 10.
    np.testing.assert_allclose(normalize.normalize(stats, obs), [[1.0, -1.0, 10.0], [0.0, 0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(normalize.normalize(stats, obs, clip=0.5), [[0.5, -0.5, 0.5], [0.0, 0.0, 0.0]])
    # Integer observations come out float32.
    assert normalize.normalize(stats, jnp.array([1, -2, 0], jnp.int32)).dtype == jnp.float32


def _envs(max_steps: int = 3, num_envs: int = 3):
    env, params = gymnax_env.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=max_steps)
    raw = wrappers.VecEnv(wrappers.for_training(env), num_envs)
    return raw, normalize.NormalizeObservation(raw), params


def test_wrapper_updates_then_normalises_obs_and_final_obs_with_the_same_stats():
    raw, norm, params = _envs(max_steps=3)
    raw_state, raw_ts = raw.reset(jax.random.PRNGKey(0), params)
    state, ts = norm.reset(jax.random.PRNGKey(0), params)
    seen = [np.asarray(raw_ts.obs)]
    # Reset already counts the first observations, and normalises them with the updated statistics.
    np.testing.assert_allclose(state.stats.mean, _pooled(seen[0])[0], rtol=1e-5)
    np.testing.assert_allclose(ts.obs, normalize.normalize(state.stats, raw_ts.obs), rtol=1e-6)
    np.testing.assert_allclose(ts.info["final_obs"], ts.obs)
    step, raw_step = jax.jit(norm.step), jax.jit(raw.step)
    for t in range(5):
        key, action = jax.random.PRNGKey(10 + t), jnp.full((3,), t % 2, jnp.int32)
        raw_state, raw_ts = raw_step(key, raw_state, action, params)
        state, ts = step(key, state, action, params)
        seen.append(np.asarray(raw_ts.obs))
        mean, var, count = _pooled(np.concatenate(seen))
        np.testing.assert_allclose(state.stats.count, count, rtol=1e-6)
        np.testing.assert_allclose(state.stats.mean, mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(state.stats.var, var, rtol=1e-4)
        np.testing.assert_allclose(ts.obs, normalize.normalize(state.stats, raw_ts.obs), rtol=1e-5, atol=1e-6)
        # The bootstrap observation is on the same scale as obs: same (already updated) statistics.
        final = normalize.normalize(state.stats, raw_ts.info["final_obs"])
        np.testing.assert_allclose(ts.info["final_obs"], final, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ts.reward, raw_ts.reward)
        np.testing.assert_array_equal(ts.info["done"], raw_ts.info["done"])
        # Episodes are cut every 3 steps: there the true last obs differs from the reset obs in obs.
        cut = t == 2
        np.testing.assert_array_equal(ts.truncated, np.full((3,), cut))
        assert np.allclose(ts.info["final_obs"], ts.obs) != cut
    # Normalising actually changed the scale: CartPole's raw obs are not standardised.
    assert not np.allclose(np.asarray(ts.obs), np.asarray(raw_ts.obs), atol=1e-3)


def test_final_obs_on_a_truncation_step_is_normalised_not_replaced():
    raw, norm, params = _envs(max_steps=2, num_envs=2)
    state, _ = norm.reset(jax.random.PRNGKey(1), params)
    raw_state, _ = raw.reset(jax.random.PRNGKey(1), params)
    for t in range(2):
        key, action = jax.random.PRNGKey(t), jnp.zeros((2,), jnp.int32)
        state, ts = norm.step(key, state, action, params)
        raw_state, raw_ts = raw.step(key, raw_state, action, params)
    assert np.all(np.asarray(ts.truncated))
    assert not np.allclose(raw_ts.info["final_obs"], raw_ts.obs)
    np.testing.assert_allclose(ts.info["final_obs"], normalize.normalize(state.stats, raw_ts.info["final_obs"]))
    np.testing.assert_allclose(ts.obs, normalize.normalize(state.stats, raw_ts.obs))


def test_wrapper_state_keeps_its_types_and_traces_once():
    _, norm, params = _envs()
    state, _ = norm.reset(jax.random.PRNGKey(0), params)
    types = jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), state)
    assert types.stats.mean == ((4,), jnp.float32, False) and types.stats.count == ((), jnp.float32, False)
    step = jax.jit(chex.assert_max_traces(norm.step, n=1), donate_argnums=1)
    for t in range(3):
        state, ts = step(jax.random.PRNGKey(t), state, jnp.zeros((3,), jnp.int32), params)
    assert jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), state) == types
    assert ts.obs.dtype == jnp.float32
    np.testing.assert_allclose(state.stats.count, 12 + EPS, rtol=1e-6)  # 3 envs x (1 reset + 3 steps)
    assert norm.observation_space(params).shape == (4,) and float(norm.observation_space(params).high[0]) == 10.0


def test_clip_must_be_positive():
    raw, _, _ = _envs()
    with pytest.raises(ValueError, match=r"NormalizeObservation.clip must be > 0, got 0.0"):
        normalize.NormalizeObservation(raw, clip=0.0)
