"""Tests for vibe.algorithms.sac.networks: action scaling, squashed log-density, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms.sac import networks


def test_scale_action_maps_tanh_range_onto_the_bounds():
    low, high = np.array([-2.0], np.float32), np.array([2.0], np.float32)
    squashed = jnp.array([[-1.0], [0.0], [1.0], [0.5]])
    np.testing.assert_allclose(networks.scale_action(squashed, low, high), [[-2.0], [0.0], [2.0], [1.0]])


def test_scale_action_on_an_asymmetric_box():
    low, high = np.array([-1.0, 0.0], np.float32), np.array([3.0, 1.0], np.float32)
    squashed = jnp.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    # Each feature: -1 -> low, 0 -> mid, 1 -> high.
    expected = [[-1.0, 0.0], [1.0, 0.5], [3.0, 1.0]]
    np.testing.assert_allclose(networks.scale_action(squashed, low, high), expected)


def _log_prob_by_hand(u, mean, std, low, high):
    """log N(u; mean, std) - sum log(1 - tanh(u)^2) - sum log((high - low) / 2), in float64."""
    gaussian = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    return gaussian.sum() - np.log(1 - np.tanh(u) ** 2).sum() - np.log((high - low) / 2).sum()


def test_log_prob_of_the_squashed_scaled_action_golden():
    mean, std = np.array([0.5, -0.3]), np.array([0.5, 2.0])
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 3.0], np.float32)
    u = np.array([0.2, -1.0])
    action = (high + low) / 2 + (high - low) / 2 * np.tanh(u)  # [0.39475, 0.35760]
    dist = networks.action_distribution(jnp.asarray(mean), jnp.log(jnp.asarray(std)), low, high)
    # Gaussian: -0.5*(0.6^2 + 0.35^2) - log(0.5) - log(2) - log(2 pi) = -2.07913;
    # tanh: -log(1 - tanh(0.2)^2) - log(1 - tanh(-1)^2) = 0.03974 + 0.86756;
    # scaling: -log(2) - log(1.5) = -1.09861.
    expected = -2.07913 + 0.03974 + 0.86756 - 1.09861
    np.testing.assert_allclose(_log_prob_by_hand(u, mean, std, low, high), expected, atol=1e-4)
    np.testing.assert_allclose(dist.log_prob(jnp.asarray(action, jnp.float32)), expected, atol=1e-4)


def test_the_scaling_log_det_is_in_the_log_prob():
    # Same pre-squash point, bounds +-2 instead of +-1: the density of the action halves.
    mean, log_std = jnp.zeros(1), jnp.zeros(1)
    unit = networks.action_distribution(mean, log_std, np.float32([-1.0]), np.float32([1.0]))
    wide = networks.action_distribution(mean, log_std, np.float32([-2.0]), np.float32([2.0]))
    gap = unit.log_prob(jnp.array([0.5])) - wide.log_prob(jnp.array([1.0]))
    np.testing.assert_allclose(gap, np.log(2.0), rtol=1e-5)


def test_sample_and_log_prob_match_the_formula():
    actor = networks.Actor(2, (16,))
    obs = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    params = actor.init(jax.random.PRNGKey(1), obs)
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    action, log_prob = networks.sample_action(actor, params, obs, jax.random.PRNGKey(2), low, high)
    assert action.shape == (64, 2) and log_prob.shape == (64,)
    assert np.all(np.asarray(action) >= low) and np.all(np.asarray(action) <= high)
    mean, log_std = (np.asarray(x, np.float64) for x in actor.apply(params, obs))
    u = np.arctanh((np.asarray(action, np.float64) - (high + low) / 2) / ((high - low) / 2))
    expected = [_log_prob_by_hand(u[i], mean[i], np.exp(log_std[i]), low, high) for i in range(64)]
    np.testing.assert_allclose(log_prob, expected, rtol=1e-3, atol=1e-3)


def test_greedy_action_is_the_scaled_tanh_of_the_mean():
    actor = networks.Actor(1, (16,))
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    params = actor.init(jax.random.PRNGKey(1), obs)
    mean, _ = actor.apply(params, obs)
    greedy = networks.greedy_action(actor, params, obs, np.float32([-2.0]), np.float32([2.0]))
    np.testing.assert_allclose(greedy, 2.0 * np.tanh(np.asarray(mean)), rtol=1e-6)


def test_actor_clips_the_log_std():
    actor = networks.Actor(1, (4,), log_std_min=-5.0, log_std_max=2.0)
    params = actor.init(jax.random.PRNGKey(0), jnp.zeros(3))
    head = params["params"]["MLP_0"]["Dense_1"]
    for bias, expected in ((10.0, 2.0), (-10.0, -5.0)):
        # Zero head weights: the outputs are the biases (mean 0, log_std = bias, then clipped).
        new_head = {"kernel": jnp.zeros_like(head["kernel"]), "bias": jnp.array([0.0, bias])}
        clipped = {"params": {"MLP_0": {**params["params"]["MLP_0"], "Dense_1": new_head}}}
        _, log_std = actor.apply(clipped, jnp.ones((1, 3)))
        np.testing.assert_allclose(log_std, [[expected]])


def test_parameter_counts_and_independent_twin_critics():
    actor_params = networks.Actor(1, (32,)).init(jax.random.PRNGKey(0), jnp.zeros(3))
    critic = networks.TwinCritic((32,))
    critic_params = critic.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(1))
    count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))  # noqa: E731
    assert count(actor_params) == (3 * 32 + 32) + (32 * 2 + 2)  # 194: mean and log_std heads
    assert count(critic_params) == 2 * ((4 * 32 + 32) + (32 + 1))  # 386: two Q(obs, action) MLPs
    kernel = critic_params["params"]["VmapMLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1])
    q = critic.apply(critic_params, jnp.ones((5, 3)), jnp.ones((5, 1)))
    assert q.shape == (2, 5) and not np.allclose(q[0], q[1])
