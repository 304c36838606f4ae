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


def _pendulum_return(theta: float, theta_dot: float, steps: int) -> float:
    """Gym's Pendulum-v1 equations with zero torque, in float64: the sum of ``steps`` rewards."""
    g, length, dt, max_speed = 10.0, 1.0, 0.05, 8.0  # the mass only scales the torque term
    total = 0.0
    for _ in range(steps):
        normalized = (theta + np.pi) % (2 * np.pi) - np.pi
        total -= normalized**2 + 0.1 * theta_dot**2  # + 0.001 u^2 with u = 0
        theta_dot = np.clip(theta_dot + 3 * g / (2 * length) * np.sin(theta) * dt, -max_speed, max_speed)
        theta = theta + theta_dot * dt
    return total


def test_max_steps_bounds_envs_without_an_end():
    env, params = gymnax_env.make("Pendulum-v1")
    params = params.replace(max_steps_in_episode=10**6)
    key = jax.random.PRNGKey(0)
    returns = evaluate(env, params, lambda obs, key: jnp.zeros((2, 1)), key, 2, max_steps=5)
    assert returns.shape == (2,)
    # Exactly 5 steps from the same reset states as evaluate's (its first split of the key).
    reset_key, _ = jax.random.split(key)
    states, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, 2), params)
    expected = [_pendulum_return(float(states.theta[i]), float(states.theta_dot[i]), 5) for i in range(2)]
    np.testing.assert_allclose(np.asarray(returns), expected, rtol=1e-5)
    six_steps = [_pendulum_return(float(states.theta[i]), float(states.theta_dot[i]), 6) for i in range(2)]
    assert not np.allclose(np.asarray(returns), six_steps, rtol=1e-5)  # the bound really stopped it at 5
