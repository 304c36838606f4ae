"""The checkpoint directory of a run, and saving/restoring a run state in it.

A checkpoint is one orbax step (the update count) with three items:

- `params`: the policy's parameters only, a standard orbax PyTree checkpoint
  that loads without vibe (`ocp.StandardCheckpointer().restore(dir/params)`);
  `restore_params` reads it with the assets and never touches `train_state`
  (a policy server needs no replay buffer);
- `train_state`: everything else the run needs to continue bit-for-bit
  (optimizer state, env states and observations, RNG key, replay buffer,
  counters): the run state with `params` left out. The writer process stores
  it as one byte array (`{"bytes": uint8[n]}`, each leaf's offset, shape and
  dtype in the assets' `packed_layouts`): orbax's CPU cost grows with the
  number of arrays. Multi-process saves store one array per leaf;
  `restore` reads both;
- `assets`: JSON (`<step>/assets/metadata`) with the resolved config and the
  env's observation/action spec; `read_assets(..., required=...)` names a
  missing field and the file.

Beside the steps, a run directory holds:

- `best.json`: the step that evaluated best (`CheckpointManager.mark_best`,
  `best_step`; see `vibe.checkpoint.best`). The keep policy (the latest
  `max_to_keep`, every `keep_period`-th) never deletes it;
- `_broken/<step>-<unix time>/`: checkpoints that `restore` could not read
  (a truncated or corrupt file), moved there, never deleted, once an older
  step restored instead;
- `_deleted/`: steps the keep policy dropped, renamed there, then deleted.

Saves are asynchronous: `save` copies the arrays to host memory (the host loop
donates the live state to the next chunk) and a low-priority writer process
(`vibe.checkpoint.writer`) writes them with orbax, so a save in flight takes
almost no CPU from training. Orbax's temporary-directory-then-rename commit
means a process killed mid-save leaves the previous checkpoint as the latest
complete one. Under several JAX processes (multi-host) each process writes its
own shards through orbax's in-process async save instead.

Reading (`restore_params`, `read_assets`, `best_step`, `restore`) takes a
`CheckpointManager` or a run directory path; a path is opened read-only (no
writer process; nothing is created, moved or deleted).
"""

import logging
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vibe.checkpoint import best, writer
from vibe.checkpoint.config import CheckpointConfig
from vibe.checkpoint.reading import (
    BROKEN_DIR,
    LayoutMismatchError,
    Step,
    _split,
    best_record,
    best_step,
    read_assets,
    restore,
    restore_assets,
    restore_params,
)

logger = logging.getLogger(__name__)

State = Any

__all__ = [  # reading lives in vibe.checkpoint.reading; one import gives the whole API
    "BROKEN_DIR",
    "CheckpointManager",
    "LayoutMismatchError",
    "Step",
    "best_record",
    "best_step",
    "initialize_checkpoint_dir",
    "read_assets",
    "restore",
    "restore_assets",
    "restore_params",
    "save",
]


class CheckpointManager:
    """The checkpoints of one run directory: read through orbax here, written by a writer process."""

    def __init__(self, directory: str, config: CheckpointConfig) -> None:
        writer.empty_trash(directory)  # a dropped step half-deleted by a killed save; orbax removes its tmp dirs
        options = writer.orbax_options(config, asynchronous=True, trash=False, directory=directory)
        self._orbax = ocp.CheckpointManager(directory, options=options)
        self._last_saved: int | None = None
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

    def reload(self) -> None:
        """Re-lists the steps on disk, here and (before its next save) in the writer process."""
        self._orbax.reload()
        if self._writer is not None:
            self._writer.reload()

    def restore(self, step: int, args: Any) -> Any:
        return self._orbax.restore(step, args=args)

    def save(
        self, step: int, items: dict[str, Any], assets: dict[str, Any], *, new_best: tuple[str, float] | None = None
    ) -> None:
        """Starts writing `items` (item name → pytree of arrays) and `assets` (JSON) as checkpoint `step`.

        `new_best=(metric_name, value)`: `step` is the run's new best. It is recorded in `best.json` before the save
        starts, so this save's keep decision (in the writer process, or in orbax's own thread under several
        processes) already keeps `step` and drops the best it supersedes. A resumed run ignores a `best.json`
        whose step never committed (a kill mid-save)."""
        if new_best is not None:
            self.wait_until_finished()  # the save in flight decided its keeps with the previous best
            if jax.process_index() == 0:
                best.write(str(self.directory), step, *new_best)
        self._last_saved = step
        if self._writer is not None:
            self._writer.save(step, items, assets, packed=("train_state",))
            return
        # Copies: the caller donates the arrays to its next train chunk while orbax still reads them.
        items = jax.tree.map(lambda x: x.copy(), items)
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        self._orbax.save(step, args=ocp.args.Composite(**args, assets=ocp.args.JsonSave(assets)))

    def mark_best(self, step: int, metric_name: str, value: float) -> None:
        """Records saved checkpoint `step` as the run's best (`metric_name` = `value`) in `<run_dir>/best.json`.

        From then on the keep policy never deletes `step` (until another step is marked best), and a new manager
        on this directory (a resumed run) reads it back: `best_step`, `best_record`, `restore_params(step="best")`.
        The caller decides what "best" means; this records its choice. Call it with the step of the save in
        flight or of a committed checkpoint (ValueError otherwise); under several processes every process calls
        it with the same arguments and process 0 writes the file.
        """
        pending = self._in_flight_step()
        if pending is not None and pending != step:
            # The keep decision of that newer save may predate best.json: let it finish, then check `step` is left.
            self.wait_until_finished()
            pending = None
        if step != pending and step not in self.all_steps():
            raise ValueError(
                f"cannot mark checkpoint {step} best: {self.directory} holds no step {step} (steps: "
                f"{sorted(self.all_steps())}); mark a step right after saving it, before the keep policy drops it"
            )
        if jax.process_index() == 0:
            best.write(str(self.directory), step, metric_name, value)

    def best_step(self) -> int | None:
        """The step recorded by `mark_best` (in this or an earlier run in the directory), or None."""
        return best_step(self)

    def move_aside(self, step: int) -> str:
        """Moves checkpoint `step` to `<run_dir>/_broken/<step>-<unix time>/` (never deletes it); returns that path.

        Orbax's list of steps, here and in the writer process, is re-read afterwards, so the keep policy neither
        counts the step nor tries to delete it.
        """
        self.wait_until_finished()
        directory = str(self.directory)
        target = os.path.join(directory, BROKEN_DIR, f"{step}-{int(time.time())}")
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            suffix = 0
            while os.path.exists(target):  # two moves of one step number within a second
                suffix += 1
                target = os.path.join(directory, BROKEN_DIR, f"{step}-{int(time.time())}-{suffix}")
            os.rename(os.path.join(directory, str(step)), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"vibe.checkpoint.move_aside.{step}")
        self.reload()
        return target

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

    def _in_flight_step(self) -> int | None:
        if self._writer is not None:
            return self._writer.pending_step
        return self._last_saved if self._orbax.is_saving_in_progress() else None


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


def save(
    manager: CheckpointManager,
    step: int,
    state: State,
    assets: Mapping[str, Any],
    *,
    new_best: tuple[str, float] | None = None,
) -> None:
    """Starts an asynchronous save of `state` as checkpoint `step`; on return `state` may be donated.
    `new_best=(metric_name, value)` marks it the run's best (`CheckpointManager.save`)."""
    params, train_state, paths = _split(state)
    items = {"params": params, "train_state": train_state}
    manager.save(step, items, {**assets, "train_state_paths": paths}, new_best=new_best)
