"""FSDP on a ViT that PPO trains from pixels, on 4 emulated CPU devices (`//tests:multigpu`).

PPO on PixelCartPole-v1 resized to 8x8 (the run's `--wrappers.resize 8 8`) with one block of
`FSDP_DEMO` (width 1024, MLP 1024x4096: 16 MiB kernels, past the 4 MiB threshold): on 4 devices
with fsdp 2 and 4 those kernels and their Adam moments are split along "fsdp", and the parameters
equal a 1-device run of the same global batch (tolerance as in multigpu_runner_test.py). The loop is
the runner's (same shardings, one donated chunk) without its run directory: saving this ~150 MB state
would dominate the test.
"""

import dataclasses
from typing import Any

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vibe.algorithms.ppo.config import PPOConfig
from vibe.config.train_config import TrainConfig
from vibe.envs.config import WrapperConfig
from vibe.networks.config import FSDP_DEMO, EncoderConfig
from vibe.scripts import training
from vibe.sharding import fsdp
from vibe.sharding import mesh as mesh_lib
from vibe.sharding.mesh import FSDP_AXIS
from vibe.train.loop import make_train_chunk

# A fail, not a skip: Bazel reports a target whose tests all skipped as passed.
if jax.device_count() != 4:
    pytest.fail(
        f"needs 4 devices, sees {jax.device_count()}: run it as //tests:multigpu, or with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu",
        pytrace=False,
    )

ATOL = 1e-5
VIT = EncoderConfig(kind="vit", hidden_sizes=(), activation="relu", vit=dataclasses.replace(FSDP_DEMO, depth=1))
# 4 envs (one per device on 4 devices) x 4 steps, 2 updates of 2 minibatches each.
ALGO = PPOConfig(num_envs=4, num_steps=4, total_timesteps=4 * 4 * 2, update_epochs=1, num_minibatches=2, encoder=VIT)
WRAPPERS = WrapperConfig(resize=(8, 8))
MLP_KERNEL = (1024, 4096)  # the block's MLP kernels: (width, mlp_dim) and its transpose


def train(*, devices: int, fsdp_devices: int = 1) -> Any:
    """The runner's sharded loop without its checkpoints: init placed by the algorithm's roles and the
    FSDP rule on a `(devices / fsdp, fsdp)` mesh, then every update in one donated chunk call."""
    algorithm = training.make_algorithm(
        TrainConfig(name="pixel_vit", env="PixelCartPole-v1", wrappers=WRAPPERS, algo=ALGO)
    )
    mesh = mesh_lib.make_mesh(fsdp_devices, jax.devices()[:devices])
    key = jax.random.PRNGKey(0)
    with mesh_lib.set_mesh(mesh):
        abstract_state = jax.eval_shape(algorithm.init, key)
        shardings = fsdp.state_shardings(abstract_state, mesh, algorithm.roles(abstract_state), batch_dim=0)
        state = jax.jit(algorithm.init, out_shardings=shardings)(key)
        chunk = make_train_chunk(algorithm.train_step, shardings, mesh_lib.replicated(mesh))
        state, _ = chunk(state, np.int32(algorithm.num_updates))
    assert chunk.traces == [1] and int(state.step) == algorithm.num_updates
    return state


def spec(leaf: jax.Array) -> PartitionSpec:
    sharding = leaf.sharding
    assert isinstance(sharding, NamedSharding), sharding
    return sharding.spec


def mlp_kernels(tree: Any) -> dict[str, jax.Array]:
    """Every leaf shaped like one of the ViT block's MLP kernels, by path."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    found = {jax.tree_util.keystr(p): x for p, x in leaves if tuple(x.shape) in (MLP_KERNEL, MLP_KERNEL[::-1])}
    assert found, "no 1024x4096 kernel"
    return found


def assert_close(actual: Any, expected: Any) -> None:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
    for path, a, b in zip(paths, jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=ATOL, err_msg=path)


def test_fsdp_splits_the_vit_mlp_kernels_and_trains_the_same_params_as_one_device() -> None:
    expected = train(devices=1)
    assert expected.obs.shape[1:] == (8, 8, 3) and expected.obs.dtype == np.uint8
    for k in (2, 4):
        state = train(devices=4, fsdp_devices=k)
        kernels = mlp_kernels(state.params)
        assert len(kernels) == 4  # the block's two MLP kernels, in the actor's and the critic's torso
        for path, kernel in kernels.items():
            assert FSDP_AXIS in spec(kernel), (path, kernel.sharding)
            assert {s.data.size for s in kernel.addressable_shards} == {kernel.size // k}, path
        moments = mlp_kernels(state.opt_state)  # Adam's mu and nu of each kernel
        assert len(moments) == 2 * len(kernels)
        for path, moment in moments.items():
            assert FSDP_AXIS in spec(moment), (path, moment.sharding)
            assert {s.data.size for s in moment.addressable_shards} == {moment.size // k}, path
        assert_close(state.params, expected.params)
        assert_close(state.opt_state, expected.opt_state)
    moved = jax.tree.map(lambda a: float(np.abs(np.asarray(a)).max()), mlp_kernels(expected.opt_state))
    assert all(v > 0 for v in moved.values()), moved  # the moments saw gradients: the runs trained
