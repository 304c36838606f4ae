"""Tests for vibe.algorithms.ppo.losses against hand-computed values."""

import jax.numpy as jnp
import numpy as np

from vibe.algorithms.ppo import losses


def test_gae_bootstraps_truncation_but_not_termination():
    # Column 0, one env over 4 steps: step 1 is truncated (bootstrap from V(final obs) = 10 and
    # cut the advantage chain), step 2 is terminated (no bootstrap), step 3 ends the rollout.
    # Column 1: a second env with no episode end.
    rewards = jnp.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    values = jnp.array([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0]])
    next_values = jnp.array([[1.0, 0.0], [10.0, 0.0], [7.0, 0.0], [3.0, 0.0]])
    terminated = jnp.array([[False, False], [False, False], [True, False], [False, False]])
    truncated = jnp.array([[False, False], [True, False], [False, False], [False, False]])
    advantages, targets = losses.gae(rewards, values, next_values, terminated, truncated, gamma=0.9, lam=0.8)
    # Column 0 deltas: 1 + .9*1 - .5 = 1.4; 2 + .9*10 - 1 = 10; 3 - 1.5 = 1.5; 4 + .9*3 - 2 = 4.7.
    # A_3 = 4.7; A_2 = 1.5 (done); A_1 = 10 (done); A_0 = 1.4 + .72 * 10 = 8.6.
    # Column 1 deltas are all 1: A_3 = 1, A_2 = 1.72, A_1 = 1 + .72 * 1.72, A_0 = 1 + .72 * 2.2384.
    expected = np.array([[8.6, 2.611648], [10.0, 2.2384], [1.5, 1.72], [4.7, 1.0]])
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)
    np.testing.assert_allclose(targets, expected + np.asarray(values), rtol=1e-6)


def test_categorical_log_prob_and_entropy():
    logits = jnp.array([[0.0, 0.0], [0.0, jnp.log(3.0)]])
    np.testing.assert_allclose(losses.categorical_log_prob(logits, jnp.array([0, 1])), np.log([0.5, 0.75]), rtol=1e-6)
    entropy_1 = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(losses.categorical_entropy(logits), [np.log(2.0), entropy_1], rtol=1e-6)


def test_ppo_loss_golden_values():
    # Sample 0: new pi(a=0) = 0.5, old 0.4 -> ratio 1.25, clipped to 1.2 (positive advantage).
    # Sample 1: new pi(a=1) = 0.75 = old -> ratio 1.
    logits = jnp.array([[0.0, 0.0], [0.0, jnp.log(3.0)]])
    batch = losses.PPOBatch(
        obs=jnp.zeros((2, 1)),
        action=jnp.array([0, 1]),
        log_prob=jnp.log(jnp.array([0.4, 0.75])),
        value=jnp.array([1.0, 0.0]),
        advantage=jnp.array([2.0, 0.0]),  # normalised to [1, -1]
        target=jnp.array([2.0, 0.3]),
    )
    value = jnp.array([1.5, -0.1])
    total, metrics = losses.ppo_loss(logits, value, batch, clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    # Policy: -mean(min(1.25*1, 1.2*1), min(1*-1, 1*-1)) = -mean(1.2, -1) = -0.1.
    np.testing.assert_allclose(metrics["loss/policy"], -0.1, rtol=1e-5)
    # Value: sample 0 clipped prediction 1.2 -> (1.2-2)^2 = .64 > (1.5-2)^2 = .25; sample 1 (-0.4)^2 = .16.
    np.testing.assert_allclose(metrics["loss/value"], 0.5 * (0.64 + 0.16) / 2, rtol=1e-5)
    entropy = (np.log(2.0) - (0.25 * np.log(0.25) + 0.75 * np.log(0.75))) / 2
    np.testing.assert_allclose(metrics["loss/entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(total, -0.1 + 0.5 * 0.2 - 0.01 * entropy, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(metrics["loss/total"], total)
    np.testing.assert_allclose(metrics["loss/approx_kl"], (0.25 - np.log(1.25)) / 2, rtol=1e-4)
