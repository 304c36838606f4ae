"""Tests for vibe.algorithms.ppo.losses against hand-computed values, with the log-probabilities and
entropies of the policy heads' distributions (vibe.networks.heads) PPO feeds it."""

import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms.ppo import losses
from vibe.networks import heads


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
    distribution = heads.Categorical(2).distribution(logits)
    np.testing.assert_allclose(distribution.log_prob(jnp.array([0, 1])), np.log([0.5, 0.75]), rtol=1e-6)
    entropy_1 = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(distribution.entropy(), [np.log(2.0), entropy_1], rtol=1e-6)


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
    distribution = heads.Categorical(2).distribution(logits)
    log_prob, entropy_per_sample = distribution.log_prob(batch.action), distribution.entropy()
    total, metrics = losses.ppo_loss(
        log_prob, entropy_per_sample, value, batch, clip_eps=0.2, vf_coef=0.5, ent_coef=0.01
    )
    # Policy: -mean(min(1.25*1, 1.2*1), min(1*-1, 1*-1)) = -mean(1.2, -1) = -0.1.
    np.testing.assert_allclose(metrics["loss/policy"], -0.1, rtol=1e-5)
    # Value: sample 0 clipped prediction 1.2 -> (1.2-2)^2 = .64 > (1.5-2)^2 = .25; sample 1 (-0.4)^2 = .16.
    np.testing.assert_allclose(metrics["loss/value"], 0.5 * (0.64 + 0.16) / 2, rtol=1e-5)
    entropy = (np.log(2.0) - (0.25 * np.log(0.25) + 0.75 * np.log(0.75))) / 2
    np.testing.assert_allclose(metrics["loss/entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(total, -0.1 + 0.5 * 0.2 - 0.01 * entropy, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(metrics["loss/total"], total)
    np.testing.assert_allclose(metrics["loss/approx_kl"], (0.25 - np.log(1.25)) / 2, rtol=1e-4)


def test_gaussian_log_prob_and_entropy_golden_values():
    # Two action features: N(0, 1) at a = 1 (z = 1) and N(1, 2^2) at a = 1 (z = 0).
    mean = jnp.array([0.0, 1.0])
    log_std = jnp.log(jnp.array([1.0, 2.0]))
    action = jnp.array([1.0, 1.0])
    distribution = heads.Gaussian(2).distribution((mean, log_std))
    # (-1/2 - 0 - log(2 pi)/2) + (0 - log 2 - log(2 pi)/2)
    np.testing.assert_allclose(distribution.log_prob(action), -0.5 - np.log(2.0) - np.log(2 * np.pi), rtol=1e-6)
    # sum_i log sigma_i + log(2 pi e)/2 = log 2 + log(2 pi e)
    np.testing.assert_allclose(distribution.entropy(), np.log(2.0) + np.log(2 * np.pi) + 1.0, rtol=1e-6)


def test_gaussian_matches_the_closed_form_on_a_batch():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    mean = jax.random.normal(k1, (5, 3))
    log_std = jnp.broadcast_to(jax.random.normal(k2, (3,)) * 0.5, (5, 3))
    action = 3.0 * jax.random.normal(k3, (5, 3))
    distribution = heads.Gaussian(3).distribution((mean, log_std))
    # Independent features: log N(a; mu, sigma) = sum_i -z_i^2 / 2 - log sigma_i - log(2 pi) / 2.
    m, s, a = (np.asarray(x, np.float64) for x in (mean, log_std, action))
    log_prob = (-0.5 * ((a - m) / np.exp(s)) ** 2 - s - 0.5 * np.log(2 * np.pi)).sum(-1)
    entropy = (s + 0.5 * np.log(2 * np.pi * np.e)).sum(-1)
    np.testing.assert_allclose(distribution.log_prob(action), log_prob, rtol=1e-5)
    np.testing.assert_allclose(distribution.entropy(), entropy, rtol=1e-5)


def test_ppo_loss_with_gaussian_log_probs():
    # The loss sees only log-probs and entropies: one sample whose new log-prob is old + log 2
    # (ratio 2, clipped to 1.2 on a positive advantage) and one unchanged.
    mean, log_std = jnp.zeros((2, 1)), jnp.zeros((2, 1))
    action = jnp.array([[0.5], [-3.0]])  # outside Pendulum's [-2, 2]: the loss never clips actions
    distribution = heads.Gaussian(1).distribution((mean, log_std))
    log_prob = distribution.log_prob(action)
    batch = losses.PPOBatch(
        obs=jnp.zeros((2, 3)),
        action=action,
        log_prob=log_prob - jnp.array([np.log(2.0), 0.0]),
        value=jnp.zeros(2),
        advantage=jnp.array([3.0, 1.0]),  # normalised to [1, -1]
        target=jnp.zeros(2),
    )
    entropy = distribution.entropy()
    total, metrics = losses.ppo_loss(log_prob, entropy, jnp.zeros(2), batch, clip_eps=0.2, vf_coef=0.5, ent_coef=0.1)
    np.testing.assert_allclose(metrics["loss/policy"], -(1.2 - 1.0) / 2, rtol=1e-5)
    h = 0.5 * np.log(2 * np.pi * np.e)
    np.testing.assert_allclose(metrics["loss/entropy"], h, rtol=1e-6)
    np.testing.assert_allclose(total, -0.1 - 0.1 * h, rtol=1e-5)
