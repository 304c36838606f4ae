"""Tests for vibe.algorithms.dqn.losses: hand-computed TD targets, loss, epsilon and target updates."""

import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.dqn import losses


def test_double_q_targets_golden():
    # Rows: an ordinary step, a terminated step, a truncated (time-limit) step.
    reward = jnp.array([1.0, 1.0, 0.5])
    terminated = jnp.array([False, True, False])
    next_q_online = jnp.array([[1.0, 2.0], [3.0, 0.0], [0.5, 0.2]])  # argmax: 1, 0, 0
    next_q_target = jnp.array([[10.0, 20.0], [30.0, 40.0], [5.0, 6.0]])
    targets = losses.double_q_targets(reward, terminated, next_q_online, next_q_target, gamma=0.9)
    # Online picks, target evaluates: 1 + .9 * 20; terminated: r only; truncated bootstraps: .5 + .9 * 5.
    # (Plain max over the target net would give 19, 1, 5.9; bootstrapping the terminated row 28.)
    np.testing.assert_allclose(targets, [19.0, 1.0, 5.0], rtol=1e-6)


def _linear_q(params, obs):
    return obs @ params


def test_q_loss_golden_with_terminated_and_truncated_transitions():
    online = jnp.array([[1.0, 0.0], [0.0, 1.0]])  # Q(s) = s
    target = jnp.array([[0.0, 3.0], [3.0, 0.0]])  # Q'(s) = 3 * reversed(s): disagrees with the online argmax
    batch = losses.ReplayItem(
        obs=jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]),
        action=jnp.array([0, 1, 0], jnp.int32),
        reward=jnp.array([1.0, 1.0, 0.0]),
        terminated=jnp.array([False, True, False]),
        # Row 2 was truncated: next_obs is the episode's final observation, not a reset observation.
        next_obs=jnp.array([[0.0, 1.0], [5.0, 0.0], [3.0, 1.0]]),
    )
    loss, metrics = losses.q_loss(_linear_q, online, target, batch, gamma=0.5, huber_delta=1.0)
    # Q(s, a) = 1, 2, 1.
    # Row 0: online Q(s') = [0, 1] -> a* = 1; Q'(s') = [3, 0] -> 0; y = 1 + .5 * 0 = 1; error 0.
    # Row 1: terminated: y = 1; error 1 -> huber .5.
    # Row 2: online Q(s') = [3, 1] -> a* = 0; Q'(s') = [3, 9] -> 3; y = 0 + .5 * 3 = 1.5; error .5 -> .125.
    np.testing.assert_allclose(loss, (0.0 + 0.5 + 0.125) / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["q/mean"], 4.0 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss/q"], loss)


def test_q_loss_huber_is_linear_beyond_delta():
    batch = losses.ReplayItem(
        obs=jnp.array([[4.0, 0.0]]),
        action=jnp.array([0], jnp.int32),
        reward=jnp.array([0.0]),
        terminated=jnp.array([True]),
        next_obs=jnp.zeros((1, 2)),
    )
    eye = jnp.eye(2)
    loss, _ = losses.q_loss(_linear_q, eye, eye, batch, gamma=0.99, huber_delta=1.0)
    np.testing.assert_allclose(loss, 4.0 - 0.5, rtol=1e-6)  # |error| 4 > delta 1: delta * (|e| - delta / 2)
    loss, _ = losses.q_loss(_linear_q, eye, eye, batch, gamma=0.99, huber_delta=10.0)
    np.testing.assert_allclose(loss, 0.5 * 16.0, rtol=1e-6)  # quadratic inside delta


@pytest.mark.parametrize(
    ("env_steps", "expected"),
    [(0, 1.0), (250, 0.7625), (500, 0.525), (1000, 0.05), (5000, 0.05)],
)
def test_linear_epsilon(env_steps, expected):
    epsilon = losses.linear_epsilon(jnp.int32(env_steps), start_e=1.0, end_e=0.05, duration=1000)
    assert epsilon.dtype == jnp.float32
    np.testing.assert_allclose(epsilon, expected, rtol=1e-6)


def test_linear_epsilon_without_decay_is_the_final_value():
    np.testing.assert_allclose(losses.linear_epsilon(jnp.int32(0), 1.0, 0.1, duration=0), 0.1)


@pytest.mark.parametrize(
    ("gradient_steps", "tau", "expected"),
    [
        (1, 1.0, [0.0, 0.0]),  # not due: unchanged
        (3, 1.0, [1.0, 2.0]),  # due, hard copy
        (6, 0.25, [0.25, 0.5]),  # due, Polyak: .25 * online + .75 * target
        (4, 0.25, [0.0, 0.0]),
    ],
)
def test_update_target_golden(gradient_steps, tau, expected):
    online = {"w": jnp.array([1.0, 2.0])}
    target = {"w": jnp.array([0.0, 0.0])}
    out = losses.update_target(online, target, jnp.int32(gradient_steps), interval=3, tau=tau)
    np.testing.assert_allclose(out["w"], expected, rtol=1e-6)
