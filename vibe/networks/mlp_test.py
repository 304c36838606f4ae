"""Tests for vibe.networks.mlp: parameter counts, init scales, separate heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.networks import mlp


def _count(params: object) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def test_mlp_param_count_and_output_shape():
    net = mlp.MLP(hidden_sizes=(32, 32), activation="relu", out_dim=3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 5)))
    # (5*32 + 32) + (32*32 + 32) + (32*3 + 3) = 192 + 1056 + 99
    assert _count(params) == 1347
    assert net.apply(params, jnp.ones((2, 5))).shape == (2, 3)


def test_mlp_without_head_ends_with_activation():
    net = mlp.MLP(hidden_sizes=(4,), activation="tanh")
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((5,)))
    out = net.apply(params, 100.0 * jnp.ones((5,)))
    assert out.shape == (4,)
    assert np.all(np.abs(np.asarray(out)) <= 1.0)


def test_actor_critic_cartpole_param_count():
    net = mlp.ActorCritic(action_dim=2, hidden_sizes=(64, 64), activation="tanh")
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((4,)))
    # actor: (4*64+64) + (64*64+64) + (64*2+2) = 4610; critic: 320 + 4160 + 65 = 4545.
    assert _count(params["params"]["policy_mlp"]) == 4610
    assert _count(params["params"]["value_mlp"]) == 4545
    assert _count(params) == 9155


def test_actor_critic_heads_have_their_orthogonal_gains():
    net = mlp.ActorCritic(action_dim=2, hidden_sizes=(64, 64))
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((4,)))["params"]
    policy_head = np.asarray(params["policy_mlp"]["Dense_2"]["kernel"])  # [64, 2]
    value_head = np.asarray(params["value_mlp"]["Dense_2"]["kernel"])  # [64, 1]
    hidden = np.asarray(params["policy_mlp"]["Dense_1"]["kernel"])  # [64, 64]
    # Orthogonal columns scaled by the gain: W^T W = gain^2 I.
    np.testing.assert_allclose(policy_head.T @ policy_head, 0.01**2 * np.eye(2), atol=1e-8)
    np.testing.assert_allclose(value_head.T @ value_head, np.eye(1), atol=1e-5)
    np.testing.assert_allclose(hidden.T @ hidden, 2.0 * np.eye(64), atol=1e-4)


def test_actor_critic_methods_match_call():
    net = mlp.ActorCritic(action_dim=3, hidden_sizes=(8,))
    obs = jax.random.normal(jax.random.PRNGKey(2), (2, 6))
    params = net.init(jax.random.PRNGKey(0), obs)
    logits, value = net.apply(params, obs)
    assert logits.shape == (2, 3) and value.shape == (2,)
    np.testing.assert_array_equal(net.apply(params, obs, method=mlp.ActorCritic.logits), logits)
    np.testing.assert_array_equal(net.apply(params, obs, method=mlp.ActorCritic.value), value)
    np.testing.assert_array_equal(net.apply(params, obs, method="policy"), logits)


def test_gaussian_actor_critic_pendulum_param_count():
    net = mlp.GaussianActorCritic(action_dim=1, hidden_sizes=(64, 64), activation="tanh")
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((3,)))["params"]
    # actor: (3*64+64) + (64*64+64) + (64*1+1) = 4481; critic the same; one log-std per action feature.
    assert _count(params["policy_mlp"]) == 4481
    assert _count(params["value_mlp"]) == 4481
    assert params["log_std"].shape == (1,)
    assert _count(params) == 8963


def test_gaussian_actor_critic_outputs_and_state_independent_log_std():
    net = mlp.GaussianActorCritic(action_dim=2, hidden_sizes=(8,), init_log_std=-0.5)
    obs = jax.random.normal(jax.random.PRNGKey(2), (3, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    np.testing.assert_array_equal(params["params"]["log_std"], [-0.5, -0.5])
    (mean, log_std), value = net.apply(params, obs)
    assert mean.shape == (3, 2) and value.shape == (3,)
    np.testing.assert_array_equal(log_std, np.full((3, 2), -0.5, np.float32))  # the same for every state
    # The 0.01-gain head keeps initial means near 0 (|mean| <= 0.01 * |hidden| <= 0.01 * sqrt(8)).
    assert np.abs(np.asarray(mean)).max() < 0.03
    policy_mean, _ = net.apply(params, obs, method="policy")
    np.testing.assert_array_equal(policy_mean, mean)
    np.testing.assert_array_equal(net.apply(params, obs, method="value"), value)


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="activation='swishy'"):
        mlp.MLP(hidden_sizes=(4,), activation="swishy")
