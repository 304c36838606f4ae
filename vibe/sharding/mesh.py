"""The device mesh, its axis names, and the batch (activation) sharding.

One 2-D mesh serves data parallelism and FSDP (the openpi layout):

    mesh = make_mesh(num_fsdp_devices=2)          # 8 devices → ("batch": 4, "fsdp": 2)
    with set_mesh(mesh):
        state = jax.jit(init, out_shardings=fsdp.state_shardings(jax.eval_shape(init, key), mesh))(key)

Parameters and optimizer state are split along "fsdp" (vibe.sharding.fsdp);
every batch is split along both axes, so each device holds `batch / n` rows.
"""

import contextlib
from collections.abc import Iterator, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# Axis names are constants because shardings, constraints and tests name them.
BATCH_AXIS = "batch"  # pure data parallelism: replicas that hold whole copies of the (FSDP-split) state
FSDP_AXIS = "fsdp"  # the devices that split each large parameter (and its optimizer state) between them
# The batch dimension is split over *all* devices, both axes: FSDP devices are also data-parallel
# workers (each computes on its own rows and gathers the parameters it needs).
DATA_AXIS = (BATCH_AXIS, FSDP_AXIS)


def make_mesh(num_fsdp_devices: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `(n / k, k)` mesh with axes `(BATCH_AXIS, FSDP_AXIS)` over `devices` (all global devices by default).

    `k = num_fsdp_devices`; `k = 1` is plain data parallelism. The axes are
    Auto (JAX 0.11's `jax.make_mesh` defaults to Explicit, on which
    `with_sharding_constraint` fails), so the compiler propagates shardings
    from the ones we pin on inputs, outputs and activations.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if num_fsdp_devices < 1:
        raise ValueError(f"fsdp_devices={num_fsdp_devices}: the number of FSDP devices must be at least 1")
    if n % num_fsdp_devices:
        raise ValueError(
            f"Number of devices {n} must be divisible by the number of FSDP devices {num_fsdp_devices}; "
            f"set fsdp_devices to a divisor of {n} (1 for plain data parallelism)"
        )
    return jax.make_mesh(
        (n // num_fsdp_devices, num_fsdp_devices),
        DATA_AXIS,
        axis_types=(AxisType.Auto,) * 2,
        devices=devices,
    )


@contextlib.contextmanager
def set_mesh(mesh: Mesh) -> Iterator[Mesh]:
    """Makes `mesh` the context mesh (`jax.set_mesh`) for `activation_sharding_constraint`.

    Refuses nesting: a model traced under two meshes at once has no single
    answer to "how is the batch split", and a silent inner override is how
    shardings go wrong without an error. The mesh lives in JAX's context
    (not a module global), so a function jitted outside the block is retraced
    inside it rather than reusing a trace that skipped the constraints.
    """
    if not jax.sharding.get_abstract_mesh().empty:
        raise ValueError("Cannot nest set_mesh context managers")
    with jax.set_mesh(mesh):
        yield mesh


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over every device of `mesh`; other dimensions whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def activation_sharding_constraint(x: jax.Array) -> jax.Array:
    """Pins `x`'s leading (batch) dimension to be split over all devices of the context mesh.

    A no-op outside `set_mesh` (one device, or a caller that leaves sharding
    to jit's in/out shardings). Inside, `with_sharding_constraint` stops the
    compiler from choosing to gather the batch (e.g. after a matmul with an
    FSDP-split kernel). The leading dimension must divide by the device count.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
