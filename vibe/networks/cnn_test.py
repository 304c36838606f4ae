"""Tests for vibe.networks.cnn: every conv implementation equals nn.Conv, pinned sizes, no recompiles.

Each test compiles at most one or two functions (XLA:CPU compiles dominate their time), so the
comparisons are batched into one jit each and parameter counts come from ``jax.eval_shape``.
"""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.networks import cnn, encoder
from vibe.networks.config import MINATAR_CNN, NATURE_CNN, CNNConfig, EncoderConfig

# (kernel, stride, padding) on an odd, non-square image, so SAME's uneven padding and VALID's dropped border show.
# kernel == stride takes slices' space-to-depth path: SAME pads 11 rows to 12, VALID drops the last 2 rows and column.
GEOMETRIES = [
    (3, 1, "SAME"),
    (3, 1, "VALID"),
    (3, 2, "SAME"),
    (4, 3, "VALID"),
    (4, 2, "SAME"),
    (2, 3, "SAME"),
    (4, 4, "SAME"),
    (3, 3, "VALID"),
]


def _count(params: Any) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _random_like(abstract: Any, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), abstract)


def test_every_impl_equals_nn_conv_for_same_and_valid_and_strides():
    x = np.random.default_rng(1).normal(size=(2, 11, 8, 3)).astype(np.float32)
    cases = {}
    for kernel, stride, padding in GEOMETRIES:
        ref = nn.Conv(5, (kernel, kernel), (stride, stride), padding=padding)
        abstract = jax.eval_shape(ref.init, jax.random.PRNGKey(0), x)
        mine = {impl: cnn.Conv(5, kernel, stride, padding, impl) for impl in cnn.IMPLS}
        for impl, module in mine.items():
            # The same parameter names and shapes as nn.Conv's, whichever way the conv is computed.
            assert jax.tree.map(jnp.shape, jax.eval_shape(module.init, jax.random.PRNGKey(0), x)) == jax.tree.map(
                jnp.shape, abstract
            ), impl
        cases[(kernel, stride, padding)] = (ref, mine, _random_like(abstract, seed=kernel * 10 + stride))

    @jax.jit
    def outputs(x):
        return {
            key: (ref.apply(p, x), {i: m.apply(p, x) for i, m in mine.items()}) for key, (ref, mine, p) in cases.items()
        }

    for key, (want, got) in outputs(x).items():
        for impl, out in got.items():
            assert out.shape == want.shape, (key, impl)
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=f"{key} {impl}")


def test_every_impl_has_the_weight_and_input_gradients_of_nn_conv():
    x = np.random.default_rng(1).normal(size=(3, 9, 9, 2)).astype(np.float32)

    def grads(module: nn.Module) -> Any:
        return jax.grad(lambda p, x: jnp.sum(jnp.tanh(module.apply(p, x)) ** 2), argnums=(0, 1))

    # 3x3 stride 2 (overlapping patches) and 3x3 stride 3 (slices' space-to-depth path).
    for kernel, stride in [(3, 2), (3, 3)]:
        ref = nn.Conv(4, (kernel, kernel), (stride, stride))
        params = _random_like(jax.eval_shape(ref.init, jax.random.PRNGKey(0), x))
        want, got = jax.jit(
            lambda p, x, ref=ref, k=kernel, s=stride: (
                grads(ref)(p, x),
                {i: grads(cnn.Conv(4, k, s, "SAME", i))(p, x) for i in cnn.IMPLS},
            )
        )(params, x)
        for impl, g in got.items():
            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"{kernel}x{kernel}/{stride} {impl}")


def test_minatar_cnn_param_count_and_features():
    net = cnn.CNN(MINATAR_CNN, "relu")
    x = jax.ShapeDtypeStruct((2, 10, 10, 4), jnp.float32)
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)
    # 3*3*4*16 + 16 = 592; SAME keeps 10x10, so 10*10*16 = 1600 features.
    assert _count(params) == 592
    assert jax.eval_shape(net.apply, params, x).shape == (2, 1600)


def test_nature_cnn_param_count_and_features():
    net = cnn.CNN(NATURE_CNN, "relu")
    x = jax.ShapeDtypeStruct((1, 84, 84, 4), jnp.float32)
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)
    # (8*8*4*32 + 32) + (4*4*32*64 + 64) + (3*3*64*64 + 64) = 8224 + 32832 + 36928 = 77984;
    # VALID: 84 -> (84-8)/4+1 = 20 -> (20-4)/2+1 = 9 -> 9-3+1 = 7, so 7*7*64 = 3136 features.
    assert _count(params) == 77984
    assert jax.eval_shape(net.apply, params, x).shape == (1, 3136)


def test_params_do_not_depend_on_the_impl_and_a_two_layer_stack_agrees():
    x = np.random.default_rng(0).uniform(size=(4, 10, 10, 4)).astype(np.float32)
    impls = ("auto", *cnn.IMPLS)
    nets = {i: cnn.CNN(CNNConfig(channels=(8, 8), kernel_sizes=(3, 3), strides=(1, 2), conv_impl=i)) for i in impls}
    abstract = {i: jax.eval_shape(net.init, jax.random.PRNGKey(1), x) for i, net in nets.items()}
    for impl in impls:
        assert jax.tree.map(jnp.shape, abstract[impl]) == jax.tree.map(jnp.shape, abstract["lax"]), impl
    assert list(abstract["lax"]["params"]) == ["Conv_0", "Conv_1"]  # nn.Conv's names, so checkpoints match too
    params = _random_like(abstract["lax"])
    out = jax.jit(lambda p, x: {i: net.apply(p, x) for i, net in nets.items()})(params, x)
    for impl in impls:
        np.testing.assert_allclose(out[impl], out["lax"], rtol=1e-4, atol=1e-4, err_msg=impl)


def test_auto_picks_slices_on_cpu_at_any_size_that_fits_and_lax_elsewhere():
    assert cnn.choose_impl(64, (10, 10), 3, 4, "cpu") == "slices"  # a rollout step: 0.9 MiB patch matrix
    assert cnn.choose_impl(2048, (10, 10), 3, 4, "cpu") == "slices"  # an update minibatch: 28 MiB
    assert cnn.choose_impl(1024, (20, 20), 8, 4, "cpu") == "slices"  # Nature's first layer: 400 MiB
    assert cnn.choose_impl(4096, (20, 20), 8, 4, "cpu") == "lax"  # 1.6 GiB: not worth the memory
    assert cnn.choose_impl(64, (10, 10), 3, 4, "gpu") == "lax"
    assert cnn.choose_impl(64, (10, 10), 3, 4, "tpu") == "lax"


def test_one_trace_for_many_calls():
    net = cnn.CNN(MINATAR_CNN, "relu")
    x = np.zeros((64, 10, 10, 4), np.float32)
    params = _random_like(jax.eval_shape(net.init, jax.random.PRNGKey(0), x))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(params: Any, x: jax.Array) -> jax.Array:
        return net.apply(params, x)

    for i in range(3):
        apply(params, x + i)


def test_vmap_over_seeds_and_orthogonal_init():
    net = cnn.CNN(MINATAR_CNN, "relu")
    x = np.ones((3, 64, 10, 10, 4), np.float32)

    @jax.jit
    def run(keys: jax.Array, x: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
        params = jax.vmap(net.init, in_axes=(0, None))(keys, x[0])
        one = net.apply(jax.tree.map(lambda p: p[1], params), x[1])
        return params, jax.vmap(net.apply)(params, x), one

    params, out, one = run(jax.random.split(jax.random.PRNGKey(0), 3), x)
    assert out.shape == (3, 64, 1600)
    np.testing.assert_allclose(out[1], one, rtol=1e-5, atol=1e-6)
    kernel = np.asarray(params["params"]["Conv_0"]["kernel"][0]).reshape(36, 16)
    np.testing.assert_allclose(kernel.T @ kernel, 2.0 * np.eye(16), atol=1e-4)  # orthogonal, gain sqrt(2)
    assert not np.allclose(params["params"]["Conv_0"]["kernel"][0], params["params"]["Conv_0"]["kernel"][1])


def test_encoder_turns_uint8_into_floats_and_keeps_leading_axes():
    """The CNN reads float images as given; the Encoder divides uint8 by 255 and flattens leading axes."""
    enc = encoder.Encoder(EncoderConfig(kind="cnn", hidden_sizes=(), activation="relu", cnn=MINATAR_CNN), obs_ndim=3)
    net = cnn.CNN(MINATAR_CNN, "relu")
    obs = np.random.default_rng(0).integers(0, 256, (2, 3, 10, 10, 4)).astype(np.uint8)
    params = _random_like(jax.eval_shape(enc.init, jax.random.PRNGKey(0), obs))
    cnn_params = {"params": params["params"]["CNN_0"]}
    no_bias = {"params": {"Conv_0": {"kernel": cnn_params["params"]["Conv_0"]["kernel"], "bias": np.zeros(16)}}}
    ones = np.ones((6, 10, 10, 4), np.float32)

    @jax.jit
    def run(params: Any, obs: jax.Array) -> tuple[jax.Array, ...]:
        floats = obs.reshape((6, 10, 10, 4)).astype(jnp.float32) / 255
        return (
            enc.apply(params, obs),
            net.apply(cnn_params, floats),
            net.apply(no_bias, 2 * ones),
            net.apply(no_bias, ones),
        )

    features, direct, twice, once = run(params, obs)
    assert features.shape == (2, 3, 1600)
    np.testing.assert_allclose(features.reshape((6, 1600)), direct, rtol=1e-5, atol=1e-5)
    # The CNN itself does not rescale: with zero biases, twice the input is twice the (relu) response.
    assert not np.allclose(once, 0)
    np.testing.assert_allclose(twice, 2 * np.asarray(once), rtol=1e-4, atol=1e-4)


def test_a_valid_stack_too_deep_for_the_image_names_the_config():
    net = cnn.CNN(NATURE_CNN, "relu")
    # 32 -> (32-8)/4+1 = 7 -> (7-4)/2+1 = 2, too small for the last 3x3.
    with pytest.raises(ValueError, match="CNNConfig layer 2"):
        jax.eval_shape(net.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32))


def test_config_and_activation_errors_name_the_field():
    bad_impl: Any = "fft"
    with pytest.raises(ValueError, match=r"CNNConfig\.conv_impl"):
        CNNConfig(conv_impl=bad_impl)
    with pytest.raises(ValueError, match=r"CNN\.activation"):
        cnn.CNN(MINATAR_CNN, "sigmoid")
