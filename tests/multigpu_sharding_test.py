"""Sharding on 4 devices (emulated CPU devices under Bazel: see the target's env in tests/BUILD.bazel).

FSDP-sharded computations must equal the one-device computation on the same
global batch, and the large parameters must really be split along "fsdp".
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vibe.sharding import fsdp
from vibe.sharding import mesh as mesh_lib

# A fail, not a skip: Bazel reports a target whose tests all skipped as passed.
if jax.device_count() != 4:
    pytest.fail(
        f"needs 4 devices, sees {jax.device_count()}: run it as //tests:multigpu, or with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu",
        pytrace=False,
    )

BATCH, FEATURES, HIDDEN = 8, 512, 2048  # the first kernel is 512 × 2048 float32 = 4 MiB: split by default


def test_make_mesh_shapes() -> None:
    assert dict(mesh_lib.make_mesh(1).shape) == {"batch": 4, "fsdp": 1}
    assert dict(mesh_lib.make_mesh(2).shape) == {"batch": 2, "fsdp": 2}
    assert dict(mesh_lib.make_mesh(4).shape) == {"batch": 1, "fsdp": 4}
    assert dict(mesh_lib.make_mesh(1, jax.devices()[:2]).shape) == {"batch": 2, "fsdp": 1}
    assert sorted(d.id for d in mesh_lib.make_mesh(2).devices.flat) == [0, 1, 2, 3]


def test_make_mesh_rejects_3_fsdp_devices_of_4() -> None:
    with pytest.raises(ValueError, match="Number of devices 4 must be divisible by the number of FSDP devices 3"):
        mesh_lib.make_mesh(3)


def test_activation_constraint_splits_the_batch_over_all_devices() -> None:
    mesh = mesh_lib.make_mesh(2)
    x = jax.device_put(jnp.arange(8 * 3, dtype=jnp.float32).reshape(8, 3), mesh_lib.replicated(mesh))

    def f(x: jax.Array) -> jax.Array:
        return mesh_lib.activation_sharding_constraint(x + 1)

    assert jax.jit(f)(x).sharding.is_fully_replicated  # no mesh: the compiler keeps the input's layout
    with mesh_lib.set_mesh(mesh):
        y = jax.jit(f)(x)
    assert y.sharding == NamedSharding(mesh, PartitionSpec(mesh_lib.DATA_AXIS))
    assert sorted((s.device.id, s.data.shape) for s in y.addressable_shards) == [(i, (2, 3)) for i in range(4)]
    np.testing.assert_array_equal(y, np.asarray(x) + 1)


def init_params(key: jax.Array) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (FEATURES, HIDDEN)) / np.sqrt(FEATURES),
        "b1": jnp.full((HIDDEN,), 0.1),
        "w2": jax.random.normal(k2, (HIDDEN, 4)) / np.sqrt(HIDDEN),  # 32 KiB: replicated
    }


def loss(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    h = mesh_lib.activation_sharding_constraint(jnp.tanh(x @ params["w1"] + params["b1"]))
    return jnp.mean((h @ params["w2"]) ** 2)


def problem() -> tuple[dict[str, jax.Array], jax.Array]:
    params = init_params(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, FEATURES))
    return params, x


@pytest.mark.parametrize("k", [2, 4])
def test_fsdp_value_and_grad_equal_one_device(k: int) -> None:
    params, x = problem()
    expected_loss, expected_grads = jax.jit(jax.value_and_grad(loss))(params, x)  # one device, no mesh

    mesh = mesh_lib.make_mesh(k)
    shardings = fsdp.fsdp_sharding(jax.eval_shape(init_params, jax.random.PRNGKey(0)), mesh)
    assert shardings["w1"].spec == PartitionSpec(None, "fsdp")
    assert shardings["b1"].spec == PartitionSpec() and shardings["w2"].spec == PartitionSpec()
    with mesh_lib.set_mesh(mesh):
        sharded_params = jax.device_put(params, shardings)
        sharded_x = jax.device_put(x, mesh_lib.data_sharding(mesh))
        step = jax.jit(jax.value_and_grad(loss), out_shardings=(mesh_lib.replicated(mesh), shardings))
        value, grads = step(sharded_params, sharded_x)

    w1 = sharded_params["w1"]
    assert {s.data.shape for s in w1.addressable_shards} == {(FEATURES, HIDDEN // k)}
    assert grads["w1"].sharding.spec == PartitionSpec(None, "fsdp")
    np.testing.assert_allclose(value, expected_loss, rtol=1e-6, atol=1e-6)
    for name in params:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_sharded_train_loop_with_state_shardings_equals_one_device() -> None:
    """The runner's pattern: jit a donated fori_loop of updates with in/out shardings from state_shardings.

    Momentum SGD, not Adam: Adam's m/√v turns a 1e-9 difference in a near-zero
    gradient into a full-size step, which compares reduction orders, not sharding.
    """
    params, x = problem()
    optimizer = optax.sgd(0.1, momentum=0.9)

    def init(key: jax.Array) -> dict:
        params = init_params(key)
        return {"params": params, "opt_state": optimizer.init(params), "step": jnp.int32(0)}

    def chunk(state: dict, x: jax.Array, num_updates: jax.Array) -> dict:
        def body(_: jax.Array, state: dict) -> dict:
            grads = jax.grad(loss)(state["params"], x)
            updates, opt_state = optimizer.update(grads, state["opt_state"])
            params = optax.apply_updates(state["params"], updates)
            return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}

        return jax.lax.fori_loop(0, num_updates, body, state)

    key = jax.random.PRNGKey(0)
    expected = jax.jit(chunk)(jax.jit(init)(key), x, jnp.int32(3))

    mesh = mesh_lib.make_mesh(2)
    roles = {"params": "fsdp", "opt_state": "fsdp", "step": "replicated"}  # as an algorithm declares them
    shardings = fsdp.state_shardings(jax.eval_shape(init, key), mesh, roles)
    with mesh_lib.set_mesh(mesh):
        state = jax.jit(init, out_shardings=shardings)(key)  # born sharded: never whole on one device
        sharded_chunk = jax.jit(
            chunk,
            in_shardings=(shardings, mesh_lib.data_sharding(mesh), mesh_lib.replicated(mesh)),
            out_shardings=shardings,
            donate_argnums=0,
        )
        state = sharded_chunk(state, jax.device_put(x, mesh_lib.data_sharding(mesh)), jnp.int32(3))

    assert int(state["step"]) == 3
    assert state["step"].sharding.is_fully_replicated
    assert state["params"]["w1"].sharding.spec == PartitionSpec(None, "fsdp")
    assert state["opt_state"][0].trace["w1"].sharding.spec == PartitionSpec(None, "fsdp")
    for name in params:
        np.testing.assert_allclose(state["params"][name], expected["params"][name], rtol=1e-6, atol=1e-6)
        # The momentum: sums of raw gradients, 10× the parameter steps (learning rate 0.1), so 10× the tolerance.
        trace, expected_trace = state["opt_state"][0].trace[name], expected["opt_state"][0].trace[name]
        np.testing.assert_allclose(trace, expected_trace, rtol=1e-5, atol=1e-5, err_msg=name)
