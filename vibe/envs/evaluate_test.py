"""Tests for vibe.envs.evaluate: episodes stop at their own end, returns match a plain loop."""

import jax
import jax.numpy as jnp
import numpy as np

from vibe.envs import gymnax_env
from vibe.envs.evaluate import evaluate


def _always(action: int):
    return lambda obs, key: jnp.full(obs.shape[:1], action, jnp.int32)


def test_returns_match_a_step_by_step_reference():
    env, params = gymnax_env.make("CartPole-v1")
    key = jax.random.PRNGKey(3)
    returns = np.asarray(jax.jit(lambda k: evaluate(env, params, _always(0), k, num_episodes=4))(key))
    # Reference: the same resets and step keys, one episode at a time, in Python.
    reset_key, key = jax.random.split(key)
    states, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, 4), params)
    expected = np.zeros(4)
    done = np.zeros(4, bool)
    while not done.all():
        key, _, step_key = jax.random.split(key, 3)
        states, ts = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(step_key, 4), states, jnp.zeros(4, jnp.int32), params
        )
        expected += np.where(done, 0.0, np.asarray(ts.reward))
        done |= np.asarray(ts.terminated | ts.truncated)
    np.testing.assert_array_equal(returns, expected)
    # Always pushing left drops the pole within a few dozen steps, at different times per episode.
    assert 5 <= returns.min() < 50


def test_truncated_episodes_return_the_time_limit():
    env, params = gymnax_env.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=6)
    alternate = lambda obs, key: jax.random.bernoulli(key, 0.5, obs.shape[:1]).astype(jnp.int32)  # noqa: E731
    returns = evaluate(env, params, alternate, jax.random.PRNGKey(0), num_episodes=5)
    np.testing.assert_array_equal(returns, np.full(5, 6.0))


def test_max_steps_bounds_envs_without_an_end():
    env, params = gymnax_env.make("Pendulum-v1")
    params = params.replace(max_steps_in_episode=10**6)
    returns = evaluate(env, params, lambda obs, key: jnp.zeros((2, 1)), jax.random.PRNGKey(0), 2, max_steps=5)
    assert returns.shape == (2,)
    assert np.all(np.asarray(returns) < 0.0)  # Pendulum's rewards are negative
