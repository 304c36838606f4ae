"""Tests for vibe.networks.mlp: parameter counts, init scales, activations. The actor-critic tests are in
models_test.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.networks import config, mlp


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


def test_mlp_init_is_orthogonal_with_gain_sqrt2_and_zero_biases():
    net = mlp.MLP(hidden_sizes=(16, 16), out_dim=4)
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((16,)))["params"]
    hidden, head = np.asarray(params["Dense_1"]["kernel"]), np.asarray(params["Dense_2"]["kernel"])
    # Orthogonal columns scaled by the gain: W^T W = gain^2 I.
    np.testing.assert_allclose(hidden.T @ hidden, 2.0 * np.eye(16), atol=1e-4)
    np.testing.assert_allclose(head.T @ head, np.eye(4), atol=1e-5)
    assert all(not np.asarray(params[f"Dense_{i}"]["bias"]).any() for i in range(3))


@pytest.mark.parametrize("name", config.ACTIVATIONS)
def test_each_configured_activation_is_the_flax_function(name):
    x = jnp.linspace(-3.0, 3.0, 7)
    np.testing.assert_allclose(mlp.ACTIVATIONS[name](x), getattr(jax.nn, name)(x), rtol=1e-6)


def test_activations_match_the_config_names():
    # The JAX-free config layer validates against config.ACTIVATIONS; the networks must know each name.
    assert tuple(mlp.ACTIVATIONS) == config.ACTIVATIONS


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="activation='swishy'"):
        mlp.MLP(hidden_sizes=(4,), activation="swishy")
