"""Tests for vibe.networks.heads: each head's distribution against closed-form values, its sampling and
greedy action, its layers' init, and ``policy_head``'s choice per action space."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.envs import spaces
from vibe.networks import heads


def _apply_head(head: heads.Head, features: jax.Array, key: int = 0):
    """``(params, output)`` of ``head`` as a flax submodule on ``features``."""
    module = heads.HeadModule(head)
    params = module.init(jax.random.PRNGKey(key), features)
    return params, module.apply(params, features)


# --- Categorical ---------------------------------------------------------------------------


def test_categorical_log_prob_and_entropy_golden():
    logits = jnp.array([[0.0, 0.0], [0.0, jnp.log(3.0)]])  # probabilities [.5, .5] and [.25, .75]
    distribution = heads.Categorical(2).distribution(logits)
    np.testing.assert_allclose(distribution.log_prob(jnp.array([0, 1])), np.log([0.5, 0.75]), rtol=1e-6)
    entropy_1 = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(distribution.entropy(), [np.log(2.0), entropy_1], rtol=1e-6)


def test_categorical_samples_by_gumbel_max_at_the_softmax_frequencies():
    head = heads.Categorical(3)
    logits = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    noise = head.noise(jax.random.PRNGKey(0), (20_000,))
    assert noise.shape == (20_000, 3)
    samples = head.sample(logits, noise)
    assert samples.shape == (20_000,) and samples.dtype == jnp.int32
    np.testing.assert_array_equal(samples, np.argmax(np.asarray(logits + noise), -1))
    # 20k draws: the standard error of each frequency is below 0.004.
    np.testing.assert_allclose(np.bincount(np.asarray(samples), minlength=3) / 20_000, [0.2, 0.3, 0.5], atol=0.015)
    assert int(head.mode(logits)) == 2 and head.mode(logits).dtype == jnp.int32


def test_categorical_layer_starts_near_uniform():
    params, logits = _apply_head(heads.Categorical(4), jax.random.normal(jax.random.PRNGKey(1), (5, 8)))
    kernel = np.asarray(params["params"]["Dense_0"]["kernel"])  # [8, 4]
    np.testing.assert_allclose(kernel.T @ kernel, 0.01**2 * np.eye(4), atol=1e-8)  # orthogonal, gain 0.01
    assert not np.asarray(params["params"]["Dense_0"]["bias"]).any()
    assert logits.shape == (5, 4) and np.abs(np.asarray(logits)).max() < 0.1


# --- Gaussian ------------------------------------------------------------------------------


def test_gaussian_log_prob_and_entropy_golden():
    # Two action features: N(0, 1) at a = 1 (z = 1) and N(1, 2^2) at a = 1 (z = 0).
    mean, log_std = jnp.array([0.0, 1.0]), jnp.log(jnp.array([1.0, 2.0]))
    distribution = heads.Gaussian(2).distribution((mean, log_std))
    # (-1/2 - 0 - log(2 pi)/2) + (0 - log 2 - log(2 pi)/2)
    np.testing.assert_allclose(
        distribution.log_prob(jnp.array([1.0, 1.0])), -0.5 - np.log(2.0) - np.log(2 * np.pi), rtol=1e-6
    )
    # sum_i log sigma_i + log(2 pi e)/2 = log 2 + log(2 pi e)
    np.testing.assert_allclose(distribution.entropy(), np.log(2.0) + np.log(2 * np.pi) + 1.0, rtol=1e-6)


def test_gaussian_sample_is_mean_plus_std_times_noise_and_mode_is_the_mean():
    head = heads.Gaussian(2)
    mean, log_std = jnp.array([[0.5, -1.0]]), jnp.log(jnp.array([[2.0, 0.5]]))
    noise = head.noise(jax.random.PRNGKey(0), (1,))
    assert noise.shape == (1, 2)
    np.testing.assert_allclose(head.sample((mean, log_std), noise), mean + jnp.array([2.0, 0.5]) * noise, rtol=1e-6)
    np.testing.assert_array_equal(head.mode((mean, log_std)), mean)
    # Unclipped: a sample far outside any action bounds keeps its value (the env clips, not the head).
    np.testing.assert_allclose(head.sample((mean, log_std), jnp.array([[10.0, 0.0]])), [[20.5, -1.0]])


def test_gaussian_log_std_is_learned_and_state_independent():
    features = jax.random.normal(jax.random.PRNGKey(1), (3, 8))
    params, (mean, log_std) = _apply_head(heads.Gaussian(2, init_log_std=-0.5), features)
    np.testing.assert_array_equal(params["params"]["_LogStd_0"]["log_std"], [-0.5, -0.5])
    assert mean.shape == (3, 2)
    np.testing.assert_array_equal(log_std, np.full((3, 2), -0.5, np.float32))  # the same for every state
    # The 0.01-gain layer keeps initial means near 0 (|mean| <= 0.01 * |features|).
    assert np.abs(np.asarray(mean)).max() < 0.01 * float(jnp.linalg.norm(features, axis=-1).max()) + 1e-6


# --- TanhGaussian (SAC) --------------------------------------------------------------------


def _tanh_log_prob_by_hand(u, mean, std, low, high):
    """log N(u; mean, std) - sum log(1 - tanh(u)^2) - sum log((high - low) / 2), in float64."""
    gaussian = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    return gaussian.sum(-1) - np.log(1 - np.tanh(u) ** 2).sum(-1) - np.log((high - low) / 2).sum()


def test_tanh_gaussian_log_prob_of_the_squashed_scaled_action_golden():
    mean, std = np.array([0.5, -0.3]), np.array([0.5, 2.0])
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 3.0], np.float32)
    u = np.array([0.2, -1.0])
    action = (high + low) / 2 + (high - low) / 2 * np.tanh(u)  # [0.39475, 0.35760]
    distribution = heads.TanhGaussian(low, high).distribution((jnp.asarray(mean), jnp.log(jnp.asarray(std))))
    # Gaussian: -0.5*(0.6^2 + 0.35^2) - log(0.5) - log(2) - log(2 pi) = -2.07913;
    # tanh: -log(1 - tanh(0.2)^2) - log(1 - tanh(-1)^2) = 0.03974 + 0.86756;
    # scaling: -log(2) - log(1.5) = -1.09861.
    expected = -2.07913 + 0.03974 + 0.86756 - 1.09861
    np.testing.assert_allclose(_tanh_log_prob_by_hand(u, mean, std, low, high), expected, atol=1e-4)
    np.testing.assert_allclose(distribution.log_prob(jnp.asarray(action, jnp.float32)), expected, atol=1e-4)


def test_tanh_gaussian_the_scaling_log_det_is_in_the_log_prob():
    # Same pre-squash point, bounds +-2 instead of +-1: the density of the action halves.
    out = (jnp.zeros(1), jnp.zeros(1))
    unit = heads.TanhGaussian(np.float32([-1.0]), np.float32([1.0])).distribution(out)
    wide = heads.TanhGaussian(np.float32([-2.0]), np.float32([2.0])).distribution(out)
    np.testing.assert_allclose(
        unit.log_prob(jnp.array([0.5])) - wide.log_prob(jnp.array([1.0])), np.log(2.0), rtol=1e-5
    )


def test_tanh_gaussian_sample_and_log_prob_match_the_formula():
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    head = heads.TanhGaussian(low, high)
    assert head.action_dim == 2
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    mean, log_std = jax.random.normal(k1, (64, 2)), 0.5 * jax.random.normal(k2, (64, 2))
    action, log_prob = head.sample_and_log_prob((mean, log_std), jax.random.PRNGKey(2))
    assert action.shape == (64, 2) and log_prob.shape == (64,)
    assert np.all(np.asarray(action) >= low) and np.all(np.asarray(action) <= high)
    u = np.arctanh((np.asarray(action, np.float64) - (high + low) / 2) / ((high - low) / 2))
    expected = _tanh_log_prob_by_hand(
        u, np.asarray(mean, np.float64), np.exp(np.asarray(log_std, np.float64)), low, high
    )
    np.testing.assert_allclose(log_prob, expected, rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_mode_maps_the_tanh_range_onto_the_bounds():
    # Each feature: tanh -1 -> low, 0 -> the middle, 1 -> high (an asymmetric box).
    head = heads.TanhGaussian(np.array([-1.0, 0.0], np.float32), np.array([3.0, 1.0], np.float32))
    mean = jnp.array([[-20.0, -20.0], [0.0, 0.0], [20.0, 20.0], [0.5, 0.5]])
    expected = [[-1.0, 0.0], [1.0, 0.5], [3.0, 1.0], [1.0 + 2.0 * np.tanh(0.5), 0.5 + 0.5 * np.tanh(0.5)]]
    np.testing.assert_allclose(head.mode((mean, jnp.zeros_like(mean))), expected, rtol=1e-6)


def test_tanh_gaussian_clips_the_log_std():
    head = heads.TanhGaussian(np.float32([-2.0]), np.float32([2.0]), log_std_min=-5.0, log_std_max=2.0)
    features = jnp.ones((1, 4))
    params, _ = _apply_head(head, features)
    dense = params["params"]["Dense_0"]
    assert dense["kernel"].shape == (4, 2)  # mean and log_std
    for bias, expected in ((10.0, 2.0), (-10.0, -5.0)):
        # Zero weights: the outputs are the biases (mean 0, log_std = bias, then clipped).
        clipped = {"params": {"Dense_0": {"kernel": jnp.zeros_like(dense["kernel"]), "bias": jnp.array([0.0, bias])}}}
        mean, log_std = heads.HeadModule(head).apply(clipped, features)
        np.testing.assert_allclose(mean, [[0.0]])
        np.testing.assert_allclose(log_std, [[expected]])


# --- policy_head ---------------------------------------------------------------------------


def test_policy_head_picks_the_head_for_the_action_space():
    assert heads.policy_head(spaces.Discrete(3)) == heads.Categorical(3)
    box = spaces.Box(-2.0, 2.0, (2,))
    assert heads.policy_head(box, init_log_std=-1.0) == heads.Gaussian(2, init_log_std=-1.0)


@pytest.mark.parametrize(
    "space",
    [spaces.Box(-1.0, 1.0, (2, 2)), spaces.Box(0, 10, (2,), np.int32), spaces.Box(-1.0, 1.0, ())],
    ids=["matrix", "integer", "scalar"],
)
def test_policy_head_rejects_other_spaces_naming_the_owner_and_the_space(space):
    with pytest.raises(ValueError, match=r"^PPO supports Discrete and 1-D float Box action spaces; the env has Box"):
        heads.policy_head(space)
    with pytest.raises(ValueError, match=r"^BC supports") as error:
        heads.policy_head(space, owner="BC")
    assert repr(space) in str(error.value) and "\n" not in str(error.value)
