"""The checkpoint directory of a run, and saving/restoring a run state in it.

A checkpoint is one orbax step (the update count) with three items:

- `params`: the policy's parameters only, a standard orbax PyTree checkpoint
  that loads without vibe (`ocp.StandardCheckpointer().restore(dir/params)`);
- `train_state`: everything else the run needs to continue bit-for-bit
  (optimizer state, env states and observations, RNG key, replay buffer,
  counters): the run state with `params` left out. The writer process stores
  it as one byte array (`{"bytes": uint8[n]}`, each leaf's offset, shape and
  dtype in the assets' `packed_layouts`): orbax's CPU cost grows with the
  number of arrays. Multi-process saves store one array per leaf;
  `restore` reads both;
- `assets`: JSON with the resolved config and the env's observation/action spec.

Saves are asynchronous: `save` copies the arrays to host memory (the host loop
donates the live state to the next chunk) and a low-priority writer process
(`vibe.checkpoint.writer`) writes them with orbax, so a save in flight takes
almost no CPU from training. Orbax's temporary-directory-then-rename commit
means a process killed mid-save leaves the previous checkpoint as the latest
complete one. Under several JAX processes (multi-host) each process writes its
own shards through orbax's in-process async save instead.
"""

import logging
import os
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vibe.checkpoint import writer
from vibe.checkpoint.config import CheckpointConfig

logger = logging.getLogger(__name__)

State = Any


class CheckpointManager:
    """The checkpoints of one run directory: read through orbax here, written by a writer process."""

    def __init__(self, directory: str, config: CheckpointConfig) -> None:
        writer.empty_trash(directory)  # a dropped step half-deleted by a killed save; orbax removes its tmp dirs
        options = writer.orbax_options(config, asynchronous=True, trash=False)
        self._orbax = ocp.CheckpointManager(directory, options=options)
        # Several processes each hold shards of the state: orbax coordinates their writes in process.
        self._writer = writer.WriterProcess(directory, config) if jax.process_count() == 1 else None
        if self._writer is not None:
            self._writer.start()

    @property
    def directory(self) -> Any:
        return self._orbax.directory

    def latest_step(self) -> int | None:
        self._orbax.reload()  # the writer process commits steps behind this manager's back
        return self._orbax.latest_step()

    def all_steps(self) -> list[int]:
        self._orbax.reload()
        return list(self._orbax.all_steps())

    def restore(self, step: int, args: Any) -> Any:
        return self._orbax.restore(step, args=args)

    def save(self, step: int, items: dict[str, Any], assets: dict[str, Any]) -> None:
        """Starts writing `items` (item name → pytree of arrays) and `assets` (JSON) as checkpoint `step`."""
        if self._writer is not None:
            self._writer.save(step, items, assets, packed=("train_state",))
            return
        # Copies: the caller donates the arrays to its next train chunk while orbax still reads them.
        items = jax.tree.map(lambda x: x.copy(), items)
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        self._orbax.save(step, args=ocp.args.Composite(**args, assets=ocp.args.JsonSave(assets)))

    def is_saving_in_progress(self) -> bool:
        return self._writer.in_flight() if self._writer is not None else self._orbax.is_saving_in_progress()

    def wait_until_finished(self) -> None:
        """Blocks until the save in flight is committed; raises its error, or TimeoutError past the timeout."""
        if self._writer is not None:
            self._writer.wait()
        self._orbax.wait_until_finished()

    def close(self) -> None:
        """Waits for the save in flight, then stops the writer process."""
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._orbax.close()


def initialize_checkpoint_dir(
    directory: str, *, config: CheckpointConfig, overwrite: bool, resume: bool
) -> tuple[CheckpointManager, bool]:
    """Prepares `directory` and returns `(manager, resuming)`.

    - `resume` and `overwrite` together: ValueError.
    - an existing, non-empty directory: `resume` continues it, `overwrite`
      wipes it, neither raises FileExistsError naming both flags and touches
      nothing;
    - `resume` without the directory: FileNotFoundError (nothing to resume);
    - `resume` on a directory with no complete checkpoint (a run killed before
      its first save): a warning, then a fresh start in it.
    """
    if resume and overwrite:
        raise ValueError("cannot --resume and --overwrite at the same time; pass one of them")
    directory = os.path.abspath(directory)
    if jax.process_count() == 1:
        exists = _prepare_directory(directory, overwrite=overwrite, resume=resume)
    else:
        exists = _prepare_shared_directory(directory, overwrite=overwrite, resume=resume)

    manager = CheckpointManager(directory, config)
    resuming = resume and exists
    if resuming and manager.latest_step() is None:
        logger.warning("%s does not contain a complete checkpoint; starting a new run in it", directory)
        resuming = False
    return manager, resuming


def _prepare_directory(directory: str, *, overwrite: bool, resume: bool) -> bool:
    """Applies the flags to `directory` (see `initialize_checkpoint_dir`); returns whether it held a run."""
    exists = os.path.isdir(directory) and bool(os.listdir(directory))
    if exists and overwrite:
        shutil.rmtree(directory)
        logger.info("Wiped checkpoint directory %s", directory)
    elif exists and not resume:
        raise FileExistsError(
            f"checkpoint directory {directory} already exists; pass --resume to continue that run "
            "or --overwrite to delete it and start over (or --exp-name NAME for a new run)"
        )
    elif resume and not exists:
        raise FileNotFoundError(
            f"nothing to resume: {directory} does not exist; run without --resume to start a new run there"
        )
    os.makedirs(directory, exist_ok=True)
    return exists


def _prepare_shared_directory(directory: str, *, overwrite: bool, resume: bool) -> bool:
    """`_prepare_directory` for a run directory shared by several processes (one filesystem).

    Process 0 alone checks and wipes; its outcome is broadcast before any process
    builds its orbax manager (whose constructor is a collective), so a refusal is
    raised everywhere instead of leaving the others waiting for process 0.
    """
    refusals: list[type[Exception]] = [FileExistsError, FileNotFoundError]
    outcome, error = np.zeros(2, np.int32), None
    if jax.process_index() == 0:
        try:
            outcome[1] = _prepare_directory(directory, overwrite=overwrite, resume=resume)
        except (FileExistsError, FileNotFoundError) as e:
            outcome[0], error = 1 + refusals.index(type(e)), e
    outcome = np.asarray(multihost_utils.broadcast_one_to_all(outcome))
    if error is not None:
        raise error
    if outcome[0]:
        raise refusals[outcome[0] - 1](f"process 0 refused the run directory {directory}; see its log")
    return bool(outcome[1])


def _split(state: State) -> tuple[Any, dict[str, Any], list[str]]:
    """(params, the other leaves as a flat dict, their key paths).

    The rest of the state is stored flat ("00000", "00001", ...): orbax's
    structure matching trips on optax's empty states (saved as dicts, restored
    as EmptyState), and a flat dict has no such nodes. The key paths, saved in
    the assets, catch a checkpoint written by a different state layout.
    """
    leaves = jax.tree_util.tree_flatten_with_path(state.replace(params=None))[0]
    flat = {f"{i:05d}": leaf for i, (_, leaf) in enumerate(leaves)}
    return state.params, flat, [jax.tree_util.keystr(path) for path, _ in leaves]


def save(manager: CheckpointManager, step: int, state: State, assets: Mapping[str, Any]) -> None:
    """Starts an asynchronous save of `state` as checkpoint `step`; on return `state` may be donated."""
    params, train_state, paths = _split(state)
    manager.save(step, {"params": params, "train_state": train_state}, {**assets, "train_state_paths": paths})


def _placed(leaf: Any) -> Any:
    """`leaf` with a sharding: the default device when it has none, so orbax restores a jax.Array."""
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        return jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        )
    return leaf


def restore(manager: Any, abstract_state: State, step: int | None = None) -> tuple[int, State]:
    """`(step, state)` of checkpoint `step` (the latest complete one by default).

    `manager`: a `CheckpointManager` or a plain `ocp.CheckpointManager` of the
    run directory. `abstract_state` gives structure, shapes, dtypes and
    shardings, e.g. `jax.eval_shape(algorithm.init, key)` (leaves without a
    sharding go to the default device).
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {manager.directory}")
    params, train_state, paths = _split(jax.tree.map(_placed, abstract_state))
    assets = restore_assets(manager, step)
    saved_paths = assets.get("train_state_paths")
    if saved_paths != paths:
        raise ValueError(
            f"checkpoint {step} in {manager.directory} holds a different run state layout than this code builds "
            f"(e.g. another algorithm or config); resume it with the config it was written with"
        )
    layout = assets.get(writer.PACKED_LAYOUTS, {}).get("train_state")
    # A packed train_state is one byte array: read to host memory (a numpy template), then split.
    template = train_state if layout is None else {"bytes": np.zeros(sum(map(_nbytes, layout)), np.uint8)}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(params),
            train_state=ocp.args.StandardRestore(template),
        ),
    )
    if layout is None:
        leaves = [restored.train_state[key] for key in sorted(restored.train_state)]
    else:
        leaves = _unpack(np.asarray(restored.train_state["bytes"]), layout, train_state, paths, manager, step)
    rest = abstract_state.replace(params=None)
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(rest), leaves)
    return step, state.replace(params=restored.params)


def _nbytes(entry: Any) -> int:
    _, shape, dtype = entry
    return int(np.prod(shape, dtype=np.int64)) * jnp.dtype(dtype).itemsize


def _unpack(data: np.ndarray, layout: list, abstract: dict[str, Any], paths: list[str], manager: Any, step: int):
    """The leaves of a packed `train_state` (`data`, its bytes), placed as `abstract` (a flat dict) says."""
    arrays = []
    for (offset, shape, dtype), key, path in zip(layout, sorted(abstract), paths, strict=True):
        want = abstract[key]
        if tuple(shape) != want.shape or jnp.dtype(dtype) != want.dtype:
            raise ValueError(
                f"checkpoint {step} in {manager.directory} holds train_state{path} as {dtype}{list(shape)}, but this "
                f"config builds {want.dtype}{list(want.shape)}; resume it with the config it was written with"
            )
        host = np.frombuffer(data, jnp.dtype(dtype), int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
        arrays.append(jax.make_array_from_callback(want.shape, want.sharding, host.__getitem__))
    return arrays


def restore_assets(manager: Any, step: int | None = None) -> dict[str, Any]:
    """The JSON assets of checkpoint `step` (the latest by default)."""
    step = manager.latest_step() if step is None else step
    return dict(manager.restore(step, args=ocp.args.Composite(assets=ocp.args.JsonRestore())).assets)
