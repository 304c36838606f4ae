"""Mesh construction, the mesh context and the activation constraint on the default single device.

The multi-device cases (real splits, FSDP matmuls) are in tests/multigpu_sharding_test.py.
"""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec, SingleDeviceSharding

from vibe.sharding import mesh as mesh_lib


def one_device_mesh() -> jax.sharding.Mesh:
    return mesh_lib.make_mesh(1, jax.devices()[:1])  # (1, 1) however many devices the process has


def test_axis_names() -> None:
    assert (mesh_lib.BATCH_AXIS, mesh_lib.FSDP_AXIS) == ("batch", "fsdp")
    assert mesh_lib.DATA_AXIS == ("batch", "fsdp")


def test_make_mesh_single_device_is_auto() -> None:
    mesh = one_device_mesh()
    assert dict(mesh.shape) == {"batch": 1, "fsdp": 1}
    assert dict(mesh_lib.make_mesh(1).shape) == {"batch": len(jax.devices()), "fsdp": 1}
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
    assert list(mesh.devices.flat) == jax.devices()[:1]


def test_make_mesh_rejects_a_non_divisor() -> None:
    n = len(jax.devices())
    message = rf"Number of devices {n} must be divisible by the number of FSDP devices {n + 1}; set fsdp_devices"
    with pytest.raises(ValueError, match=message):
        mesh_lib.make_mesh(n + 1)
    with pytest.raises(ValueError, match="fsdp_devices=0"):
        mesh_lib.make_mesh(0)


def test_set_mesh_refuses_nesting_and_restores_the_context() -> None:
    mesh = one_device_mesh()
    assert jax.sharding.get_abstract_mesh().empty
    with mesh_lib.set_mesh(mesh) as inner:
        assert inner is mesh
        assert dict(jax.sharding.get_abstract_mesh().shape) == {"batch": 1, "fsdp": 1}
        with pytest.raises(ValueError, match="Cannot nest set_mesh context managers"), mesh_lib.set_mesh(mesh):
            pass
    assert jax.sharding.get_abstract_mesh().empty


def test_shardings_specs() -> None:
    mesh = one_device_mesh()
    assert mesh_lib.data_sharding(mesh) == NamedSharding(mesh, PartitionSpec(("batch", "fsdp")))
    assert mesh_lib.replicated(mesh) == NamedSharding(mesh, PartitionSpec())


def _constrained(x: jax.Array) -> jax.Array:
    return mesh_lib.activation_sharding_constraint(x * 2)


def test_activation_constraint_is_a_no_op_without_a_mesh() -> None:
    x = jnp.ones((4, 3))
    assert mesh_lib.activation_sharding_constraint(x) is x
    jaxpr = str(jax.make_jaxpr(_constrained)(x))
    assert "sharding_constraint" not in jaxpr
    assert isinstance(jax.jit(_constrained)(x).sharding, SingleDeviceSharding)


def test_activation_constraint_applies_inside_the_mesh_and_retraces() -> None:
    x = jnp.ones((4, 3))
    f = jax.jit(_constrained)
    f(x)  # traced without a mesh first: the mesh must not reuse that trace
    mesh = one_device_mesh()
    with mesh_lib.set_mesh(mesh):
        jaxpr = str(jax.make_jaxpr(_constrained)(x))
        y = f(x)
    assert "sharding_constraint" in jaxpr
    assert "('batch', 'fsdp')" in jaxpr
    # On one device the size-1 axes normalise away; the output lives on the mesh all the same.
    assert isinstance(y.sharding, NamedSharding) and y.sharding.mesh == mesh
    assert jnp.array_equal(y, 2 * x)
