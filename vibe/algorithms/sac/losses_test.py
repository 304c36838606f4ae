"""Tests for vibe.algorithms.sac.losses against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms.sac import losses


def test_td_target_bootstraps_truncated_but_not_terminated_transitions():
    reward = jnp.array([1.0, 1.0, -0.5])
    # Row 0 terminated; row 1 was cut by the time limit (truncated: not terminated); row 2 mid-episode.
    terminated = jnp.array([True, False, False])
    next_q = jnp.array([[2.0, 5.0, 1.0], [3.0, 4.0, 2.0]])  # [2 critics, b]
    next_log_prob = jnp.array([-1.0, 0.5, -2.0])
    target = losses.td_target(reward, terminated, next_q, next_log_prob, jnp.float32(0.2), gamma=0.9)
    # Row 0: r only = 1.
    # Row 1: 1 + 0.9 * (min(5, 4) - 0.2 * 0.5) = 1 + 0.9 * 3.9 = 4.51.
    # Row 2: -0.5 + 0.9 * (min(1, 2) - 0.2 * -2) = -0.5 + 0.9 * 1.4 = 0.76.
    np.testing.assert_allclose(target, [1.0, 4.51, 0.76], rtol=1e-6)


def test_critic_loss_sums_the_twin_mean_squared_errors():
    q = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    target = jnp.array([1.0, 1.0])
    # Critic 0: (0 + 1) / 2 = 0.5; critic 1: (4 + 9) / 2 = 6.5.
    np.testing.assert_allclose(losses.critic_loss(q, target), 7.0)
    # The target is a constant: no gradient flows into it.
    grad = jax.grad(lambda t: losses.critic_loss(q, t))(target)
    np.testing.assert_array_equal(grad, [0.0, 0.0])


def test_actor_loss_uses_the_smaller_q():
    q = jnp.array([[1.0, 4.0], [2.0, 3.0]])
    log_prob = jnp.array([0.5, -1.0])
    # min Q = [1, 3]; alpha log pi = [0.1, -0.2]; mean([0.1 - 1, -0.2 - 3]) = -2.05.
    np.testing.assert_allclose(losses.actor_loss(q, log_prob, jnp.float32(0.2)), -2.05, rtol=1e-6)


def test_alpha_loss_value_and_direction():
    log_alpha = jnp.log(0.5)
    log_prob = jnp.array([-0.5, 0.1])  # entropy estimate -mean(log pi) = 0.2
    # -log(0.5) * mean(log pi + (-1)) = 0.69315 * -1.2 = -0.83178.
    np.testing.assert_allclose(losses.alpha_loss(log_alpha, log_prob, -1.0), -0.83178, rtol=1e-5)
    # Entropy 0.2 is above the target -1: gradient descent must lower alpha.
    assert float(jax.grad(losses.alpha_loss)(log_alpha, log_prob, -1.0)) > 0
    # Entropy 0.2 below a target of 1: alpha must rise.
    assert float(jax.grad(losses.alpha_loss)(log_alpha, log_prob, 1.0)) < 0
