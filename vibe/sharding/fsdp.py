"""Fully sharded data parallelism: which axis of each parameter (and optimizer/state leaf) to split.

The rule is openpi's (`training/sharding.py`), so a state that fits there
fits here. A leaf is replicated when any of these hold:

- the mesh's fsdp axis has size 1 (plain data parallelism; nothing is logged);
- it has no `.shape` (Python scalars, static fields);
- it has fewer than 2 dimensions (biases, scales, counters, keys);
- it is smaller than `min_size_mbytes` MiB (splitting it saves less memory
  than the gathers cost).

Otherwise its largest dimension divisible by the fsdp axis size `k` is split
along "fsdp" (on equal sizes the later dimension, e.g. the output features of
a square kernel); if no dimension divides by `k` the leaf is replicated with a
warning. FSDP saves memory, not time: every step gathers the split leaves.
"""

import logging
from typing import Any

import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

from vibe.sharding.mesh import DATA_AXIS, FSDP_AXIS

logger = logging.getLogger(__name__)

MiB = 2**20
# Leaves smaller than this stay replicated: splitting them saves less memory than the gathers cost (openpi's value).
MIN_SIZE_MBYTES = 4.0


def fsdp_axis(shape: tuple[int, ...], k: int) -> int | None:
    """The dimension of `shape` to split `k` ways: the largest one divisible by `k`, ties → the later one."""
    divisible = [i for i, size in enumerate(shape) if size % k == 0]
    return max(divisible, key=lambda i: (shape[i], i)) if divisible else None


def fsdp_sharding(
    tree: Any, mesh: Mesh | AbstractMesh, *, min_size_mbytes: float = MIN_SIZE_MBYTES, log: bool = False
) -> Any:
    """A pytree of `NamedSharding`s over `mesh`, one per leaf of `tree`, by the rule above.

    `tree` holds arrays or `jax.ShapeDtypeStruct`s (from `jax.eval_shape`, so
    the state never has to exist unsharded). `log=True` logs each split leaf
    with its key path ("Sharding ['params']['w'] of shape (4096, 1024)
    (16.00 MiB) along axis 0"). An `AbstractMesh` gives the same decisions
    without devices (shardings to inspect, not to place arrays with).
    """
    if FSDP_AXIS not in mesh.shape:
        raise ValueError(
            f"fsdp_sharding needs a mesh with an {FSDP_AXIS!r} axis, got axes {tuple(mesh.shape)}; "
            "build it with vibe.sharding.mesh.make_mesh"
        )
    k = mesh.shape[FSDP_AXIS]
    min_size_bytes = min_size_mbytes * MiB
    replicate = NamedSharding(mesh, PartitionSpec())

    def leaf_sharding(path: jax.tree_util.KeyPath, leaf: Any) -> NamedSharding:
        if k == 1 or not hasattr(leaf, "shape") or len(leaf.shape) < 2:
            return replicate
        shape = tuple(leaf.shape)
        # dtype.itemsize also covers typed PRNG key arrays, which np.dtype rejects.
        nbytes = int(np.prod(shape)) * leaf.dtype.itemsize
        if nbytes < min_size_bytes:
            return replicate
        axis = fsdp_axis(shape, k)
        name = jax.tree_util.keystr(path)
        if axis is None:
            # Always said (openpi only with log=True): a large leaf copied to every device is a memory surprise.
            logger.warning(
                "Could not find a valid sharding for %s of shape %s (%.2f MiB) with mesh of shape %s; replicating it",
                name,
                shape,
                nbytes / MiB,
                dict(mesh.shape),
            )
            return replicate
        if log:
            logger.info("Sharding %s of shape %s (%.2f MiB) along axis %d", name, shape, nbytes / MiB, axis)
        spec: list[str | None] = [None] * len(shape)
        spec[axis] = FSDP_AXIS
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree_util.tree_map_with_path(leaf_sharding, tree)


def state_shardings(
    abstract_state: Any,
    mesh: Mesh | AbstractMesh,
    roles: Any = None,
    *,
    batch_dim: int = 0,
    min_size_mbytes: float = MIN_SIZE_MBYTES,
) -> Any:
    """Shardings of a whole run state, placed by the role the algorithm declares for each subtree.

    `roles` is a prefix tree of `abstract_state` (e.g. the state record with a role string in each
    field, `Algorithm.roles`): under "batch" every leaf is split along `batch_dim` (the env axis;
    1 under a leading seed axis) over all devices (`DATA_AXIS`), and replicated where that axis
    does not divide by the device count; under "replicated" every leaf is the same on every
    device (statistics shared by all envs); under "fsdp" (and everywhere when `roles` is None)
    leaves follow `fsdp_sharding` with logging: params, optimizer moments and large replay
    buffers are split along "fsdp", keys, counters and small leaves are replicated.

    For the runner, with `s = state_shardings(jax.eval_shape(init, key), mesh, algo.roles(...))` and
    `r = replicated(mesh)`: `jax.jit(init, out_shardings=s)` builds the state already split, and
    `jax.jit(chunk, in_shardings=(s, r), out_shardings=(s, r), donate_argnums=0)` keeps it so.
    """
    if roles is None:
        return fsdp_sharding(abstract_state, mesh, min_size_mbytes=min_size_mbytes, log=True)
    n = mesh.size
    replicate = NamedSharding(mesh, PartitionSpec())

    def batch_sharding(leaf: Any) -> NamedSharding:
        if len(leaf.shape) <= batch_dim or leaf.shape[batch_dim] % n:
            return replicate
        spec: list[Any] = [None] * len(leaf.shape)
        spec[batch_dim] = DATA_AXIS
        return NamedSharding(mesh, PartitionSpec(*spec))

    def place(role: str, subtree: Any) -> Any:
        if role == "batch":
            return jax.tree.map(batch_sharding, subtree)
        if role == "replicated":
            return jax.tree.map(lambda _: replicate, subtree)
        if role == "fsdp":
            return fsdp_sharding(subtree, mesh, min_size_mbytes=min_size_mbytes, log=True)
        raise ValueError(f"unknown state role {role!r}; an algorithm's roles are batch, replicated or fsdp")

    return jax.tree.map(place, roles, abstract_state, is_leaf=lambda x: isinstance(x, str))
