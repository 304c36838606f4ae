"""The checkpoint directory of a run, and saving/restoring a run state in it.

A checkpoint is one orbax step (the update count) with three items:

- `params`: the policy's parameters only, a standard orbax PyTree checkpoint
  that loads without vibe (`ocp.StandardCheckpointer().restore(dir/params)`);
- `train_state`: everything else the run needs to continue bit-for-bit
  (optimizer state, env states and observations, RNG key, replay buffer,
  counters): the run state with `params` left out;
- `assets`: JSON with the resolved config and the env's observation/action spec.

Saves are asynchronous: the arrays are copied first (the host loop donates the
live state to the next chunk) and orbax writes in the background; its
temporary-directory-then-rename commit means a process killed mid-save leaves
the previous checkpoint as the latest complete one.
"""

import logging
import os
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from vibe.checkpoint.config import CheckpointConfig

logger = logging.getLogger(__name__)

State = Any


def initialize_checkpoint_dir(
    directory: str, *, config: CheckpointConfig, overwrite: bool, resume: bool
) -> tuple[ocp.CheckpointManager, bool]:
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

    policies = [ocp.checkpoint_managers.LatestN(n=config.max_to_keep)]
    if config.keep_period:
        policies.append(ocp.checkpoint_managers.EveryNSteps(interval_steps=config.keep_period))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(timeout_secs=config.async_timeout_secs),
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        cleanup_tmp_directories=True,  # removes what a killed save left half-written
        create=True,
    )
    manager = ocp.CheckpointManager(directory, options=options)
    resuming = resume and exists
    if resuming and manager.latest_step() is None:
        logger.warning("%s does not contain a complete checkpoint; starting a new run in it", directory)
        resuming = False
    return manager, resuming


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


def save(manager: ocp.CheckpointManager, step: int, state: State, assets: Mapping[str, Any]) -> None:
    """Starts an asynchronous save of `state` as checkpoint `step`."""
    # Copies: the caller donates `state` to its next train chunk while orbax still reads.
    params, train_state, paths = _split(jax.tree.map(lambda x: x.copy(), state))
    manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            train_state=ocp.args.StandardSave(train_state),
            assets=ocp.args.JsonSave({**assets, "train_state_paths": paths}),
        ),
    )


def restore(manager: ocp.CheckpointManager, abstract_state: State, step: int | None = None) -> tuple[int, State]:
    """`(step, state)` of checkpoint `step` (the latest complete one by default).

    `abstract_state` gives structure, shapes, dtypes and shardings, e.g.
    `jax.eval_shape(algorithm.init, key)`.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {manager.directory}")
    params, train_state, paths = _split(abstract_state)
    saved_paths = restore_assets(manager, step).get("train_state_paths")
    if saved_paths != paths:
        raise ValueError(
            f"checkpoint {step} in {manager.directory} holds a different run state layout than this code builds "
            f"(e.g. another algorithm or config); resume it with the config it was written with"
        )
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(params),
            train_state=ocp.args.StandardRestore(train_state),
        ),
    )
    rest = abstract_state.replace(params=None)
    leaves = [restored.train_state[key] for key in sorted(restored.train_state)]
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(rest), leaves)
    return step, state.replace(params=restored.params)


def restore_assets(manager: ocp.CheckpointManager, step: int | None = None) -> dict[str, Any]:
    """The JSON assets of checkpoint `step` (the latest by default)."""
    step = manager.latest_step() if step is None else step
    return dict(manager.restore(step, args=ocp.args.Composite(assets=ocp.args.JsonRestore())).assets)
