"""Tests for vibe.envs.wrappers: auto-reset keeps the final observation, episode statistics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vibe.envs import gymnax_env, wrappers


def _cartpole(max_steps: int):
    env, params = gymnax_env.make("CartPole-v1")
    return env, params.replace(max_steps_in_episode=max_steps)


def test_auto_reset_keeps_the_final_observation_on_truncation():
    env, params = _cartpole(max_steps=3)
    auto = wrappers.AutoReset(env)
    state, timestep = auto.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(timestep.info["final_obs"], timestep.obs)
    plain_state = state
    for t in range(1, 4):
        key = jax.random.PRNGKey(10 + t)
        step_key, reset_key = jax.random.split(key)
        plain_state, plain = env.step(step_key, plain_state, jnp.int32(0), params)
        state, timestep = auto.step(key, state, jnp.int32(0), params)
        np.testing.assert_array_equal(timestep.info["final_obs"], plain.obs)
        if t < 3:
            assert not bool(timestep.truncated)
            np.testing.assert_array_equal(timestep.obs, timestep.info["final_obs"])
    assert bool(timestep.truncated) and not bool(timestep.terminated)
    # The returned obs is the next episode's first one; the final one survives in info.
    _, reset = env.reset(reset_key, params)
    np.testing.assert_array_equal(timestep.obs, reset.obs)
    assert not np.allclose(timestep.obs, timestep.info["final_obs"])
    assert int(state.time) == 0


def test_auto_reset_on_termination():
    env, params = _cartpole(max_steps=500)
    auto = wrappers.AutoReset(env)
    state, _ = auto.reset(jax.random.PRNGKey(0), params)
    state = state.replace(theta=jnp.float32(0.2), theta_dot=jnp.float32(2.0), time=jnp.int32(7))
    state, timestep = auto.step(jax.random.PRNGKey(1), state, jnp.int32(1), params)
    assert bool(timestep.terminated) and not bool(timestep.truncated)
    assert float(timestep.info["final_obs"][2]) > 0.209
    assert abs(float(timestep.obs[2])) <= 0.05  # a fresh reset draws theta from [-0.05, 0.05]
    assert int(state.time) == 0


def test_episode_stats_reports_finished_episodes_only():
    env, params = _cartpole(max_steps=3)
    stats = wrappers.for_training(env)
    state, timestep = stats.reset(jax.random.PRNGKey(0), params)
    assert float(timestep.info["episode_return"]) == 0.0 and not bool(timestep.info["done"])
    seen = []
    for t in range(6):
        state, timestep = stats.step(jax.random.PRNGKey(t), state, jnp.int32(t % 2), params)
        info = timestep.info
        seen.append((bool(info["done"]), float(info["episode_return"]), int(info["episode_length"])))
    # CartPole pays 1 per step; episodes are cut at 3 steps.
    assert seen == [(False, 0.0, 0), (False, 0.0, 0), (True, 3.0, 3)] * 2
    assert float(state.episode_return) == 0.0 and int(state.episode_length) == 0


def test_episode_stats_running_totals():
    env, params = _cartpole(max_steps=10)
    stats = wrappers.EpisodeStats(env)
    state, _ = stats.reset(jax.random.PRNGKey(0), params)
    for t in range(4):
        state, _ = stats.step(jax.random.PRNGKey(t), state, jnp.int32(t % 2), params)
    assert float(state.episode_return) == 4.0 and int(state.episode_length) == 4


def test_vec_env_batches_and_auto_resets_per_env():
    env, params = _cartpole(max_steps=2)
    vec = wrappers.VecEnv(wrappers.for_training(env), num_envs=3)
    state, timestep = vec.reset(jax.random.PRNGKey(0), params)
    assert timestep.obs.shape == (3, 4)
    step = jax.jit(vec.step)
    state, timestep = step(jax.random.PRNGKey(1), state, jnp.zeros(3, jnp.int32), params)
    state, timestep = step(jax.random.PRNGKey(2), state, jnp.ones(3, jnp.int32), params)
    np.testing.assert_array_equal(timestep.info["done"], [True, True, True])
    np.testing.assert_array_equal(timestep.info["episode_length"], [2, 2, 2])
    np.testing.assert_array_equal(state.env_state.time, [0, 0, 0])


def test_vectorize_lifts_auto_reset_above_the_vec_env():
    env, params = _cartpole(max_steps=500)
    vec = wrappers.vectorize(wrappers.for_training(env), num_envs=3)
    assert isinstance(vec, wrappers.EpisodeStats) and isinstance(vec.env, wrappers.AutoReset)
    assert vec.env.env == wrappers.VecEnv(env, 3)
    state, timestep = vec.reset(jax.random.PRNGKey(0), params)
    # The same pytree as vmapping the single-env stack, so states and checkpoints do not change.
    single_state, _ = wrappers.VecEnv(wrappers.for_training(env), 3).reset(jax.random.PRNGKey(0), params)
    assert jax.tree.structure(state) == jax.tree.structure(single_state)
    assert timestep.info["episode_return"].shape == (3,)
    step = jax.jit(vec.step)
    action = jnp.ones(3, jnp.int32)

    # No env done: nothing is reset; every env moves exactly as the plain env does.
    before = state.env_state
    state, timestep = step(jax.random.PRNGKey(1), state, action, params)
    plain = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))(jax.random.PRNGKey(1), before, action, params)[1]
    np.testing.assert_array_equal(timestep.obs, plain.obs)
    np.testing.assert_array_equal(timestep.info["final_obs"], plain.obs)
    np.testing.assert_array_equal(state.env_state.time, [1, 1, 1])

    # Env 1 falls over: only it is reset and reports its episode; the others keep going.
    inner = state.env_state
    tipped = inner.replace(theta=inner.theta.at[1].set(0.2), theta_dot=inner.theta_dot.at[1].set(2.0))
    state = dataclasses.replace(state, env_state=tipped)
    state, timestep = step(jax.random.PRNGKey(2), state, action, params)
    np.testing.assert_array_equal(timestep.info["done"], [False, True, False])
    np.testing.assert_array_equal(timestep.terminated, [False, True, False])
    np.testing.assert_array_equal(timestep.info["episode_length"], [0, 2, 0])
    np.testing.assert_array_equal(timestep.info["episode_return"], [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(state.env_state.time, [2, 0, 2])
    assert float(timestep.info["final_obs"][1, 2]) > 0.209  # the terminal observation survives
    assert abs(float(timestep.obs[1, 2])) <= 0.05  # the new episode's first one
    obs, final_obs = np.asarray(timestep.obs), np.asarray(timestep.info["final_obs"])
    np.testing.assert_array_equal(obs[[0, 2]], final_obs[[0, 2]])
    np.testing.assert_array_equal(state.episode_length, [2, 0, 2])


def test_vectorize_under_vmap_equals_one_seed_at_a_time():
    """Over seeds the reset ``cond`` becomes a select; the result must not change."""
    env, params = _cartpole(max_steps=4)
    vec = wrappers.vectorize(wrappers.for_training(env), num_envs=2)

    def rollout(key: jax.Array) -> jax.Array:
        state, _ = vec.reset(key, params)

        def body(state, key):
            state, timestep = vec.step(key, state, jnp.zeros(2, jnp.int32), params)
            return state, (timestep.obs, timestep.info["final_obs"], timestep.info["episode_return"])

        return jax.lax.scan(body, state, jax.random.split(key, 9))[1]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(3)])
    batched = jax.jit(jax.vmap(rollout))(keys)
    for s in range(3):
        one = jax.jit(rollout)(keys[s])
        for b, o in zip(batched, one, strict=True):
            np.testing.assert_array_equal(b[s], o)
    assert float(batched[2].sum()) == 3 * 2 * 2 * 4.0  # 9 steps of 4-step episodes: 2 per env, return 4
