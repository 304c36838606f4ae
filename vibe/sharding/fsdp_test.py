"""The FSDP rule on abstract meshes: the decisions need no devices, so these run on one CPU.

tests/multigpu_sharding_test.py places real arrays with these shardings on 4 devices.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec

from vibe.sharding import fsdp

MiB = 2**20


def abstract_mesh(batch: int, k: int) -> AbstractMesh:
    return AbstractMesh((batch, k), ("batch", "fsdp"), axis_types=(AxisType.Auto,) * 2)


def spec_of(shape: tuple[int, ...], k: int = 4, dtype: jnp.dtype = jnp.float32, **kwargs: float) -> PartitionSpec:
    sharding = fsdp.fsdp_sharding(jax.ShapeDtypeStruct(shape, dtype), abstract_mesh(2, k), **kwargs)
    return sharding.spec


@pytest.mark.parametrize(
    ("shape", "k", "axis"),
    [
        ((8, 12), 4, 1),  # the largest axis
        ((12, 8), 4, 0),
        ((4097, 1024), 4, 1),  # the largest axis is not divisible: the next one
        ((2048, 2048), 4, 1),  # tie: the later axis
        ((3, 2048, 2048), 2, 2),
        ((2049, 1027), 4, None),  # nothing divides
        ((6, 3), 3, 0),
    ],
)
def test_fsdp_axis(shape: tuple[int, ...], k: int, axis: int | None) -> None:
    assert fsdp.fsdp_axis(shape, k) == axis


def test_below_the_threshold_is_replicated_and_at_it_is_split() -> None:
    assert spec_of((1024, 1023)) == PartitionSpec()  # 4 MiB − 4 KiB
    assert spec_of((1024, 1024)) == PartitionSpec(None, "fsdp")  # exactly 4 MiB
    assert spec_of((1024, 1024), dtype=jnp.bfloat16) == PartitionSpec()  # 2 bytes an entry: 2 MiB
    assert spec_of((1024, 1024), min_size_mbytes=8) == PartitionSpec()
    assert spec_of((8, 4), min_size_mbytes=0) == PartitionSpec("fsdp", None)


def test_largest_divisible_axis_and_ties() -> None:
    assert spec_of((2048, 1024)) == PartitionSpec("fsdp", None)
    assert spec_of((4097, 1024)) == PartitionSpec(None, "fsdp")
    assert spec_of((2048, 2048)) == PartitionSpec(None, "fsdp")
    assert spec_of((4, 1024, 1024)) == PartitionSpec(None, None, "fsdp")
    assert spec_of((2048, 6, 1024), k=2) == PartitionSpec("fsdp", None, None)


def test_nothing_divisible_warns_and_replicates(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=fsdp.__name__):
        shardings = fsdp.fsdp_sharding({"w": jax.ShapeDtypeStruct((2049, 1027), jnp.float32)}, abstract_mesh(1, 4))
    assert shardings["w"].spec == PartitionSpec()
    assert "Could not find a valid sharding for ['w'] of shape (2049, 1027) (8.03 MiB)" in caplog.text


def test_vectors_scalars_and_shapeless_leaves_are_replicated() -> None:
    tree = {
        "bias": jax.ShapeDtypeStruct((2**24,), jnp.float32),  # 64 MiB, but 1-D
        "count": jax.ShapeDtypeStruct((), jnp.int32),
        "python": 3.0,
    }
    shardings = fsdp.fsdp_sharding(tree, abstract_mesh(1, 4), min_size_mbytes=0)
    assert {k: s.spec for k, s in shardings.items()} == {k: PartitionSpec() for k in tree}


def test_fsdp_axis_of_size_one_replicates_everything_silently(caplog: pytest.LogCaptureFixture) -> None:
    tree = {"w": jax.ShapeDtypeStruct((4096, 4096), jnp.float32), "v": jax.ShapeDtypeStruct((4097, 4099), jnp.float32)}
    with caplog.at_level(logging.INFO, logger=fsdp.__name__):
        shardings = fsdp.fsdp_sharding(tree, abstract_mesh(4, 1), log=True)
    assert all(s.spec == PartitionSpec() for s in shardings.values())
    assert caplog.text == ""


def test_logs_key_paths_and_sizes(caplog: pytest.LogCaptureFixture) -> None:
    tree = {"params": {"dense": {"kernel": jax.ShapeDtypeStruct((1024, 2048), jnp.float32)}}}
    with caplog.at_level(logging.INFO, logger=fsdp.__name__):
        fsdp.fsdp_sharding(tree, abstract_mesh(2, 4), log=True)
    assert "Sharding ['params']['dense']['kernel'] of shape (1024, 2048) (8.00 MiB) along axis 1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=fsdp.__name__):
        fsdp.fsdp_sharding(tree, abstract_mesh(2, 4))
    assert caplog.text == ""  # log=False: silent about the leaves it splits


def test_real_arrays_and_abstract_shapes_agree() -> None:
    x = np.zeros((16, 8), np.float32)
    mesh = abstract_mesh(1, 4)
    real = fsdp.fsdp_sharding(x, mesh, min_size_mbytes=0)
    abstract = fsdp.fsdp_sharding(jax.eval_shape(lambda: jnp.asarray(x)), mesh, min_size_mbytes=0)
    assert real.spec == abstract.spec == PartitionSpec("fsdp", None)


def test_state_shardings_split_params_and_their_adam_moments() -> None:
    def init() -> dict:
        params = {"w": jnp.zeros((2048, 1024)), "b": jnp.zeros((1024,)), "head": jnp.zeros((1024, 2))}
        return {"params": params, "opt_state": optax.adam(1e-3).init(params), "step": jnp.int32(0)}

    shardings = fsdp.state_shardings(jax.eval_shape(init), abstract_mesh(1, 2))
    adam = shardings["opt_state"][0]
    for tree in (shardings["params"], adam.mu, adam.nu):
        assert tree["w"].spec == PartitionSpec("fsdp", None)
        assert tree["b"].spec == PartitionSpec()
        assert tree["head"].spec == PartitionSpec()  # 8 KiB
    assert adam.count.spec == PartitionSpec()
    assert shardings["step"].spec == PartitionSpec()


def test_state_shardings_split_env_batches_over_all_devices() -> None:
    state = {
        "params": {"w": jax.ShapeDtypeStruct((4, 8), jnp.float32)},
        "env_state": {
            "physics": jax.ShapeDtypeStruct((8, 3), jnp.float32),
            "time": jax.ShapeDtypeStruct((8,), jnp.int32),
            "stats": {"mean": jax.ShapeDtypeStruct((8,), jnp.float32)},  # shared by all envs
        },
        "obs": jax.ShapeDtypeStruct((8, 4), jnp.float32),
        "key": jax.ShapeDtypeStruct((2,), jnp.uint32),
    }
    roles = {
        "params": "fsdp",
        "env_state": {"physics": "batch", "time": "batch", "stats": "replicated"},
        "obs": "batch",
        "key": "fsdp",
    }
    data = PartitionSpec(("batch", "fsdp"))
    shardings = fsdp.state_shardings(state, abstract_mesh(2, 2), roles)
    assert shardings["env_state"]["physics"].spec == PartitionSpec(("batch", "fsdp"), None)
    assert shardings["env_state"]["time"].spec == data
    assert shardings["obs"].spec == PartitionSpec(("batch", "fsdp"), None)
    assert shardings["env_state"]["stats"]["mean"].spec == PartitionSpec()
    assert shardings["params"]["w"].spec == shardings["key"].spec == PartitionSpec()
    # 8 envs do not split 3 ways: replicated. Under a seed axis the env axis is the second one.
    assert fsdp.state_shardings(state, abstract_mesh(3, 1), roles)["obs"].spec == PartitionSpec()
    seeds = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2, *s.shape), s.dtype), state)
    assert fsdp.state_shardings(seeds, abstract_mesh(4, 1), roles, batch_dim=1)["obs"].spec == PartitionSpec(
        None, ("batch", "fsdp"), None
    )
    with pytest.raises(ValueError, match="unknown state role 'envs'"):
        fsdp.state_shardings(state, abstract_mesh(2, 2), {**roles, "obs": "envs"})


def test_mesh_without_an_fsdp_axis_is_refused() -> None:
    mesh = AbstractMesh((4,), ("data",), axis_types=(AxisType.Auto,))
    with pytest.raises(ValueError, match="needs a mesh with an 'fsdp' axis, got axes \\('data',\\)"):
        fsdp.fsdp_sharding({"w": np.zeros((4, 4))}, mesh)
