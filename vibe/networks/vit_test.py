"""Tests for vibe.networks.vit: pinned sizes, the patch conv, sincos values, pooling, mesh constraints, FSDP.

Parameters come from ``jax.eval_shape`` and numpy where values do not matter, so each test compiles
at most one function.
"""

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec

from vibe.networks import encoder, vit
from vibe.networks.config import FSDP_DEMO, EncoderConfig, ViTConfig
from vibe.sharding import fsdp
from vibe.sharding import mesh as mesh_lib

# A (batch 2, fsdp 2) mesh with no devices behind it: enough to trace constraints and decide FSDP splits.
FOUR_DEVICES = AbstractMesh((2, 2), (mesh_lib.BATCH_AXIS, mesh_lib.FSDP_AXIS), axis_types=(AxisType.Auto,) * 2)
IMAGES = jax.ShapeDtypeStruct((2, 10, 10, 4), jnp.float32)  # MinAtar-size: 5x5 = 25 tokens of 2x2 patches


def _count(params: Any) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _abstract(config: ViTConfig, images: jax.ShapeDtypeStruct = IMAGES) -> Any:
    return jax.eval_shape(vit.ViT(config).init, jax.random.PRNGKey(0), images)


def _random_like(abstract: Any, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32), abstract)


# d = width, m = mlp_dim, n = tokens, per block: 2 LayerNorms 4d, attention q/k/v/out 4d^2 + 4d,
# MLP 2dm + m + d; then the final LayerNorm 2d.
# Default (p 2, d 64, depth 2, 4 heads, m 128) on 10x10x4: embedding 2*2*4*64 + 64 = 1088, learned
# posemb 25*64 = 1600, blocks 2 * (256 + 16640 + 16576) = 66944, final LN 128: 69760.
# sincos2d: no posemb parameters, 69760 - 1600 = 68160; cls: one more token of 64, 69824.
# FSDP_DEMO (p 2, d 1024, depth 2, 16 heads, m 4096, sincos2d) on 8x8x3: embedding 2*2*3*1024 + 1024 = 13312,
# blocks 2 * (4096 + 4198400 + 8393728) = 25192448, final LN 2048: 25207808.
@pytest.mark.parametrize(
    ("config", "images", "count"),
    [
        (ViTConfig(), IMAGES, 69760),
        (ViTConfig(posemb="sincos2d"), IMAGES, 68160),
        (ViTConfig(pool="cls"), IMAGES, 69824),
        (FSDP_DEMO, jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32), 25207808),
    ],
    ids=["default", "sincos2d", "cls", "fsdp_demo"],
)
def test_param_counts_and_output_shape(config, images, count):
    params = _abstract(config, images)
    assert _count(params) == count
    assert jax.eval_shape(vit.ViT(config).apply, params, images).shape == (2, config.width)


def test_patch_embedding_is_the_stride_p_conv():
    x = np.random.default_rng(1).normal(size=(2, 6, 4, 3)).astype(np.float32)
    conv = nn.Conv(8, (2, 2), (2, 2), padding="VALID")
    params = _random_like(jax.eval_shape(conv.init, jax.random.PRNGKey(0), x))
    embed = vit.PatchEmbed(2, 8)
    assert jax.tree.map(jnp.shape, jax.eval_shape(embed.init, jax.random.PRNGKey(0), x)) == jax.tree.map(
        jnp.shape, params
    )
    want, got = jax.jit(lambda p, x: (conv.apply(p, x), embed.apply(p, x)))(params, x)
    np.testing.assert_allclose(got, want.reshape(2, 3 * 2, 8), rtol=1e-5, atol=1e-5)


def test_sincos2d_values_at_known_positions():
    pe = np.asarray(vit.posemb_sincos_2d(3, 4, 8))  # omega = (1, 1e-4) for each quarter of 2 channels
    assert pe.shape == (1, 12, 8)
    # Token 0, (y, x) = (0, 0): [sin 0, sin 0, cos 0, cos 0] for x, the same for y.
    np.testing.assert_allclose(pe[0, 0], [0, 0, 1, 1, 0, 0, 1, 1], atol=1e-7)
    # Token 1 is (0, 1): x-part [sin 1, sin 1e-4, cos 1, cos 1e-4]; y-part as at y = 0.
    s, c = math.sin(1.0), math.cos(1.0)
    np.testing.assert_allclose(pe[0, 1], [s, math.sin(1e-4), c, math.cos(1e-4), 0, 0, 1, 1], rtol=1e-6, atol=1e-7)
    # Token 4 is (1, 0) (row-major, 4 columns): the y-part moves instead.
    np.testing.assert_allclose(pe[0, 4], [0, 0, 1, 1, s, math.sin(1e-4), c, math.cos(1e-4)], rtol=1e-6, atol=1e-7)
    # Token 11 is (2, 3).
    np.testing.assert_allclose(pe[0, 11, [0, 2, 4, 6]], [math.sin(3), math.cos(3), math.sin(2), math.cos(2)], rtol=1e-6)


def test_gap_and_cls_pool_differently_and_outputs_are_finite():
    x = np.random.default_rng(2).uniform(size=IMAGES.shape).astype(np.float32)
    nets = {pool: vit.ViT(ViTConfig(pool=pool)) for pool in ("gap", "cls")}
    params = {pool: _random_like(_abstract(net.config)) for pool, net in nets.items()}
    out = jax.jit(lambda p, x: {pool: net.apply(p[pool], x) for pool, net in nets.items()})(params, x)
    for pool in nets:
        assert out[pool].shape == (2, 64)
        assert np.all(np.isfinite(out[pool]))
    assert not np.allclose(out["gap"], out["cls"])
    # Images differ, so do their features (attention and pooling keep the batch rows apart).
    assert not np.allclose(out["gap"][0], out["gap"][1])


def test_one_trace_for_many_calls_and_a_batch_of_one():
    net = vit.ViT(ViTConfig())
    params = _random_like(_abstract(net.config))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(params: Any, x: jax.Array) -> Any:
        return net.apply(params, x)

    x = np.zeros((1, 10, 10, 4), np.float32)
    for i in range(3):
        assert apply(params, x + i).shape == (1, 64)


def test_residual_stream_is_constrained_only_under_a_mesh_and_under_vmap():
    net = vit.ViT(ViTConfig(depth=1))
    params = _random_like(_abstract(net.config))
    seeds_params = jax.tree.map(lambda p: np.stack([p, p]), params)
    x = np.random.default_rng(3).uniform(size=(2, *IMAGES.shape)).astype(np.float32)  # [seeds, b, h, w, c]

    def run(p: Any, x: jax.Array) -> Any:
        return jax.vmap(net.apply)(p, x)

    assert "sharding_constraint" not in str(jax.make_jaxpr(run)(seeds_params, x))
    want = jax.jit(run)(seeds_params, x)
    # On one device the size-1 axes normalise away in the spec, so read the constraints off a 2x2 mesh.
    with jax.sharding.use_abstract_mesh(FOUR_DEVICES):
        jaxpr = str(jax.make_jaxpr(run)(seeds_params, x))
    # The seed axis added by vmap stays free; the batch axis is split over ("batch", "fsdp").
    assert jaxpr.count("spec=P(UNCONSTRAINED, ('batch', 'fsdp'), None, None)") == 4  # embedding, 2 residuals, MLP
    with mesh_lib.set_mesh(mesh_lib.make_mesh(1)):
        got = jax.jit(run)(seeds_params, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fsdp_splits_the_demo_vits_mlp_and_attention_kernels():
    params = _abstract(FSDP_DEMO, jax.ShapeDtypeStruct((8, 8, 8, 3), jnp.float32))
    specs = jax.tree.map(lambda s: s.spec, fsdp.fsdp_sharding(params, FOUR_DEVICES))["params"]
    for i in range(FSDP_DEMO.depth):
        block = specs[f"block_{i}"]
        assert block["mlp"]["Dense_0"]["kernel"] == PartitionSpec(None, "fsdp")  # (1024, 4096): 16 MiB
        assert block["mlp"]["Dense_1"]["kernel"] == PartitionSpec("fsdp", None)  # (4096, 1024)
        assert block["attention"]["query"]["kernel"] == PartitionSpec("fsdp", None, None)  # (1024, 16, 64): 4 MiB
        assert block["attention"]["out"]["kernel"] == PartitionSpec(None, None, "fsdp")  # (16, 64, 1024)
        assert block["mlp"]["Dense_0"]["bias"] == PartitionSpec()
        assert block["ln_mlp"]["scale"] == PartitionSpec()
    assert specs["embedding"]["kernel"] == PartitionSpec()  # 48 KiB
    split = [s for s in jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, PartitionSpec)) if s != PartitionSpec()]
    assert len(split) == 6 * FSDP_DEMO.depth  # q, k, v, out and the two MLP kernels of every block


def test_encoder_feeds_the_vit_floats_and_keeps_leading_axes():
    enc = encoder.Encoder(EncoderConfig(kind="vit", hidden_sizes=(16,), activation="relu"), obs_ndim=3)
    obs = np.random.default_rng(4).integers(0, 256, (3, 2, 10, 10, 4)).astype(np.uint8)
    params = _random_like(jax.eval_shape(enc.init, jax.random.PRNGKey(0), obs))
    features, direct = jax.jit(
        lambda p, obs: (
            enc.apply(p, obs),
            vit.ViT(ViTConfig()).apply({"params": p["params"]["ViT_0"]}, obs.reshape(6, 10, 10, 4) / 255.0),
        )
    )(params, obs)
    assert features.shape == (3, 2, 16)
    dense = params["params"]["MLP_0"]["Dense_0"]
    want = np.maximum(np.asarray(direct) @ dense["kernel"] + dense["bias"], 0)
    np.testing.assert_allclose(features.reshape(6, 16), want, rtol=1e-4, atol=1e-4)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match=r"ViTConfig\.patch_size=3 does not tile 10x10"):
        jax.eval_shape(vit.ViT(ViTConfig(patch_size=3)).init, jax.random.PRNGKey(0), IMAGES)
    with pytest.raises(ValueError, match=r"ViTConfig\.width=6 must be a multiple of 4 and at least 8"):
        ViTConfig(width=6, num_heads=2, posemb="sincos2d")
    with pytest.raises(ValueError, match=r"ViTConfig\.num_heads=5 must divide width=64"):
        ViTConfig(num_heads=5)
