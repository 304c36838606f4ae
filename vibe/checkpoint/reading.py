"""Reading checkpoints: a run state, the params and assets alone, the best step; past unreadable steps.

Each function takes a `CheckpointManager`, a plain `ocp.CheckpointManager`, or a run directory path, opened
read-only (no writer process; nothing is created, moved or deleted). A step is a number, "latest" (None) or
"best" (the step in `best.json`). The layout of a checkpoint is described in `vibe.checkpoint.manager`.

An unreadable newest checkpoint (a truncated or corrupt file: orbax and tensorstore raise anything from
`JSONDecodeError` to `OUT_OF_RANGE: Error opening "cast" driver`) does not end a resume: `restore` reads the newest
step that does read, logs one line per newer step (its number and the first line of its error) and, through a
`CheckpointManager`, moves each to `<run_dir>/_broken/<step>-<unix time>/`. It moves nothing unless an older step
read, so an error that every step shares (a bug, a missing dependency) leaves the directory as it was. A
checkpoint of another layout (another algorithm or config) raises `LayoutMismatchError`: not corruption. Under
several JAX processes a failed read raises instead (one line naming the step and the `mv` to do): a process that
failed inside orbax's restore skipped barriers the others entered, so none of them can go on to another step.
"""

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from vibe.checkpoint import best, writer

logger = logging.getLogger(__name__)

State = Any
# Which checkpoint to read: a step number, "latest", or "best" (the step in best.json); None is "latest".
Step = int | str | None
# Where `restore` moves checkpoints it cannot read: `<run_dir>/_broken/<step>-<unix time>/`.
BROKEN_DIR = "_broken"


class LayoutMismatchError(ValueError):
    """The checkpoint holds another run state layout (another algorithm or config): not corruption."""


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


@contextlib.contextmanager
def _opened(manager_or_dir: Any) -> Iterator[Any]:
    """The manager to read through: `manager_or_dir` itself, or a read-only orbax manager of a directory path."""
    if not isinstance(manager_or_dir, str | os.PathLike):
        yield manager_or_dir
        return
    directory = os.path.abspath(os.fspath(manager_or_dir))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist; pass a run directory")
    # Read-only: no writer, no tmp-dir cleanup, nothing created or deleted (the other fields say so too, or
    # orbax warns that read_only overrides them).
    options = ocp.CheckpointManagerOptions(
        read_only=True,
        save_interval_steps=0,
        create=False,
        cleanup_tmp_directories=False,
        enable_async_checkpointing=False,
    )
    absl = logging.getLogger("absl")
    absl.addFilter(_read_only_notice)
    try:
        manager = ocp.CheckpointManager(directory, options=options)
    finally:
        absl.removeFilter(_read_only_notice)
    try:
        yield manager
    finally:
        manager.close()


def _read_only_notice(record: logging.LogRecord) -> bool:
    """Drops orbax's "Given directory is read only" warning: reading is all a read-only manager is for."""
    return not record.getMessage().startswith("Given directory is read only")


def _directory(manager_or_dir: Any) -> str:
    if isinstance(manager_or_dir, str | os.PathLike):
        return os.path.abspath(os.fspath(manager_or_dir))
    return str(manager_or_dir.directory)


def best_record(manager_or_dir: Any) -> dict[str, Any] | None:
    """`best.json` of the run (`{"step", "metric", "value", "time"}`), or None when no step was marked best."""
    return best.read(_directory(manager_or_dir))


def best_step(manager_or_dir: Any) -> int | None:
    """The step `CheckpointManager.mark_best` recorded for this run directory, or None."""
    record = best_record(manager_or_dir)
    return None if record is None else int(record["step"])


def _resolve(manager: Any, step: Step) -> int:
    """The step number `step` names in `manager`'s directory; FileNotFoundError when there is no such checkpoint."""
    directory = str(manager.directory)
    if step is None or step == "latest":
        latest = manager.latest_step()
        if latest is None:
            raise FileNotFoundError(f"no complete checkpoint in {directory}")
        return int(latest)
    if step == "best":
        number = best_step(directory)
        if number is None:
            raise FileNotFoundError(
                f"no best checkpoint recorded in {directory}: {best.path(directory)} does not exist (a run writes it "
                "when it evaluates); pass step='latest' or a step number"
            )
    elif isinstance(step, int | np.integer) and not isinstance(step, bool):
        number = int(step)
    else:
        raise ValueError(f"step={step!r}: pass a step number, 'latest' or 'best'")
    if number not in manager.all_steps():
        named = f" (named by {best.path(directory)}; moved to {BROKEN_DIR}/ if unreadable?)" if step == "best" else ""
        raise FileNotFoundError(
            f"no checkpoint {number} in {directory}{named}; its steps are {sorted(manager.all_steps())}"
        )
    return number


def _step_path(manager: Any, step: int) -> Any:
    return manager.directory / str(step)


def _assets_file(manager: Any, step: int) -> str:
    return os.path.join(str(manager.directory), str(step), "assets", "metadata")


def _read_assets(manager: Any, step: int) -> dict[str, Any]:
    try:
        restored = manager.restore(step, args=ocp.args.Composite(assets=ocp.args.JsonRestore()))
    except Exception as e:
        raise ValueError(f"{_assets_file(manager, step)} is unreadable ({_first_line(e)}); read another step") from None
    return dict(restored.assets)


def _require(manager: Any, step: int, assets: Mapping[str, Any], required: Iterable[str]) -> None:
    """Raises ValueError naming the first of `required` (dotted: "config.env") that `assets` lacks, and the file."""
    for name in required:
        node: Any = assets
        for key in name.split("."):
            if not isinstance(node, Mapping) or key not in node:
                raise ValueError(
                    f"{_assets_file(manager, step)} has no field {name!r} (fields: {', '.join(sorted(assets))}); "
                    f"checkpoint {step} was written without it: save a new checkpoint with a run that records it"
                )
            node = node[key]


def read_assets(manager_or_dir: Any, step: Step = None, required: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON assets of checkpoint `step` (a number, "latest" (None) or "best").

    `required`: fields the caller needs (dotted for nested ones, "config.algo"); the first missing one raises a
    one-line ValueError naming it and `<run_dir>/<step>/assets/metadata`.
    """
    with _opened(manager_or_dir) as manager:
        number = _resolve(manager, step)
        assets = _read_assets(manager, number)
        _require(manager, number, assets, required)
        return assets


def restore_assets(manager: Any, step: Step = None) -> dict[str, Any]:
    """The JSON assets of checkpoint `step` (the latest by default); `read_assets` with nothing required."""
    return read_assets(manager, step)


def _params_args(manager: Any, step: int, abstract_params: Any) -> Any:
    """Restore args for the `params` item: `abstract_params` (shapes checked against the checkpoint first) or,
    when it is None, numpy arrays shaped as the checkpoint's own metadata says."""
    handler = ocp.StandardCheckpointHandler()
    try:
        saved = handler.metadata(_step_path(manager, step) / "params").tree
    finally:
        handler.close()
    if abstract_params is None:
        return ocp.args.StandardRestore(jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), saved))
    _check_params(saved, abstract_params, manager, step)
    return ocp.args.StandardRestore(jax.tree.map(_placed, abstract_params))


def _check_params(saved: Any, abstract: Any, manager: Any, step: int) -> None:
    """LayoutMismatchError unless `abstract` has the checkpoint's parameter names, shapes and dtypes."""

    def layout(tree: Any) -> dict[str, tuple[tuple[int, ...], Any]]:
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {
            jax.tree_util.keystr(path, simple=True, separator="/"): (tuple(leaf.shape), jnp.dtype(leaf.dtype))
            for path, leaf in leaves
        }

    have, want = layout(saved), layout(abstract)
    if have == want:
        return
    where = f"checkpoint {step} in {manager.directory}"
    fix = "restore it with the config it was written with"
    differ = [key for key in sorted(have.keys() & want.keys()) if have[key] != want[key]]
    if differ:
        (shape, dtype), (want_shape, want_dtype) = have[differ[0]], want[differ[0]]
        raise LayoutMismatchError(
            f"{where} holds params/{differ[0]} as {dtype}{list(shape)}, but this config builds "
            f"{want_dtype}{list(want_shape)}; {fix}"
        )
    raise LayoutMismatchError(
        f"{where} holds params {sorted(have.keys() - want.keys())[:3]} where this config builds "
        f"{sorted(want.keys() - have.keys())[:3]}; {fix}"
    )


def restore_params(
    manager_or_dir: Any, step: Step = None, abstract_params: Any = None, *, require: Iterable[str] = ()
) -> tuple[int, Any, dict[str, Any]]:
    """`(step, params, assets)` of a checkpoint, without reading its `train_state` (replay buffer and all).

    `manager_or_dir`: a `CheckpointManager`, an orbax manager, or a run directory path (opened read-only).
    `step`: a number, "best" (`best_step`), or "latest" / None: the newest checkpoint whose params and assets
    read, with a warning for each newer one that does not (left in place: this is a reader).
    `abstract_params`: restore with these shapes, dtypes and shardings (LayoutMismatchError when the checkpoint
    holds others); None: numpy arrays as the checkpoint's metadata describes them.
    `require`: asset fields that must exist (see `read_assets`).
    """
    require = tuple(require)
    with _opened(manager_or_dir) as manager:

        def read(number: int) -> tuple[Any, dict[str, Any]]:
            args = ocp.args.Composite(
                params=_params_args(manager, number, abstract_params), assets=ocp.args.JsonRestore()
            )
            restored = manager.restore(number, args=args)
            return restored.params, dict(restored.assets)

        if step is None or step == "latest":
            number, (params, assets) = _newest_readable(manager, read, move_aside=False)
        else:
            number = _resolve(manager, step)
            ok, result, why = _attempt(read, number, str(manager.directory))
            if not ok:
                raise ValueError(
                    f"checkpoint {number} in {manager.directory} is unreadable ({why}); "
                    "pass another step, or step='latest' for the newest readable one"
                )
            params, assets = result
        _require(manager, number, assets, require)
        return number, params, assets


def _placed(leaf: Any) -> Any:
    """`leaf` with a sharding: the default device when it has none, so orbax restores a jax.Array."""
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        return jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        )
    return leaf


def restore(manager: Any, abstract_state: State, step: Step = None) -> tuple[int, State]:
    """`(step, state)` of checkpoint `step`: a number, "best", or "latest" / None (the default).

    `manager`: a `CheckpointManager`, a plain `ocp.CheckpointManager` or a run directory path (read-only).
    `abstract_state` gives structure, shapes, dtypes and shardings, e.g. `jax.eval_shape(algorithm.init, key)`
    (leaves without a sharding go to the default device).

    Latest: when the newest checkpoint does not read (a truncated or corrupt file) but an older one does, that
    older one is restored; each newer step is logged (one warning: the step and the first line of its error)
    and, through a `CheckpointManager`, moved to `<run_dir>/_broken/<step>-<unix time>/` so the run continues
    past it. Nothing is moved when no step reads (FileNotFoundError naming the directory). A checkpoint of
    another layout (another algorithm or config) raises LayoutMismatchError at once: that is no corruption.
    Under several processes an unreadable step raises ValueError naming it (see the module docstring).
    """
    abstract_state = jax.tree.map(_placed, abstract_state)
    with _opened(manager) as reader:
        if step is None or step == "latest":
            movable = hasattr(manager, "move_aside")  # a vibe CheckpointManager, which knows its writer
            return _newest_readable(reader, lambda n: _restore_state(reader, abstract_state, n), move_aside=movable)
        number = _resolve(reader, step)
        return number, _restore_state(reader, abstract_state, number)


def _restore_state(manager: Any, abstract_state: State, step: int) -> State:
    params, train_state, paths = _split(abstract_state)
    assets = _read_assets(manager, step)
    if assets.get("train_state_paths") != paths:
        raise LayoutMismatchError(
            f"checkpoint {step} in {manager.directory} holds a different run state layout than this code builds "
            f"(e.g. another algorithm or config); resume it with the config it was written with"
        )
    layout = assets.get(writer.PACKED_LAYOUTS, {}).get("train_state")
    # A packed train_state is one byte array: read to host memory (a numpy template), then split.
    template = train_state if layout is None else {"bytes": np.zeros(sum(map(_nbytes, layout)), np.uint8)}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=_params_args(manager, step, params),
            train_state=ocp.args.StandardRestore(template),
        ),
    )
    if layout is None:
        leaves = [restored.train_state[key] for key in sorted(restored.train_state)]
    else:
        leaves = _unpack(np.asarray(restored.train_state["bytes"]), layout, train_state, paths, manager, step)
    rest = abstract_state.replace(params=None)
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(rest), leaves)
    return state.replace(params=restored.params)


def _newest_readable[T](manager: Any, read: Callable[[int], T], *, move_aside: bool) -> tuple[int, T]:
    """`(step, read(step))` for the newest step that `read` succeeds on.

    The newer steps it fails on are logged and, with `move_aside`, moved to `_broken/` — only once an older
    step read, so an error that is no corruption (every step fails alike) moves nothing.
    """
    directory = str(manager.directory)
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {directory}")
    failures: list[tuple[int, str]] = []
    for step in steps:
        ok, result, why = _attempt(read, step, directory)
        if ok:
            break
        if jax.process_count() > 1:
            # A process that failed mid-restore skipped orbax's barriers that the others entered: their
            # collectives no longer pair up, so no process can go on to another step.
            raise ValueError(
                f"checkpoint {step} of {directory} is unreadable ({why}); a multi-process run cannot skip it: "
                f"move {directory}/{step} into {directory}/{BROKEN_DIR}/ and resume"
            )
        failures.append((step, why))
    else:
        raise FileNotFoundError(
            f"no readable checkpoint in {directory}: steps {[s for s, _ in failures]} all failed to restore "
            f"(checkpoint {failures[0][0]}: {failures[0][1]}); nothing was moved; fix or remove them, or pass "
            "--overwrite to start over"
        )
    for broken, why in failures:
        if move_aside:
            where = manager.move_aside(broken)
            logger.warning("checkpoint %d of %s is unreadable (%s); moved it to %s", broken, directory, why, where)
        else:
            logger.warning("checkpoint %d of %s is unreadable (%s); reading %d instead", broken, directory, why, step)
    return step, result


def _attempt[T](read: Callable[[int], T], step: int, directory: str) -> tuple[bool, Any, str]:
    """`(True, read(step), "")`, or `(False, None, why)` when it raises anything but a layout mismatch.

    After a failed array read orbax's other reads end as "Exception ignored in <coroutine>" dumps of a whole
    TensorStore spec when they are collected; they are collected here and logged at debug level instead.
    """
    previous = sys.unraisablehook
    sys.unraisablehook = _log_unraisable
    failed = False
    try:
        return True, read(step), ""
    except (LayoutMismatchError, MemoryError):
        raise
    except Exception as e:
        logger.debug("checkpoint %d in %s did not restore", step, directory, exc_info=True)
        failed = True
        return False, None, _first_line(e)
    finally:
        if failed:
            gc.collect()
        sys.unraisablehook = previous


def _log_unraisable(hook: Any) -> None:
    """The unraisable hook while a checkpoint is read: one debug line, keeping no reference to the error.

    A module-level function on purpose: CPython calls the hook through a borrowed reference, so a per-call
    lambda that the reading thread restores away while orbax's thread is still inside it is freed mid-call
    (a segfault, seen under load).
    """
    why = _first_line(hook.exc_value) if hook.exc_value is not None else str(hook.err_msg)
    logger.debug("ignored while reading a checkpoint: %s", why)


def _first_line(error: BaseException) -> str:
    """`Type: first line of the message` of the error's root cause, at most 300 characters.

    The root cause: orbax wraps tensorstore's one-line `OUT_OF_RANGE: ...` in "Encountered error while reading
    array index ... See full TensorStore details: <a 50-line spec>".
    """
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return line if len(line) <= 300 else line[:297] + "..."


def _nbytes(entry: Any) -> int:
    _, shape, dtype = entry
    return int(np.prod(shape, dtype=np.int64)) * jnp.dtype(dtype).itemsize


def _unpack(data: np.ndarray, layout: list, abstract: dict[str, Any], paths: list[str], manager: Any, step: int):
    """The leaves of a packed `train_state` (`data`, its bytes), placed as `abstract` (a flat dict) says."""
    arrays = []
    for (offset, shape, dtype), key, path in zip(layout, sorted(abstract), paths, strict=True):
        want = abstract[key]
        if tuple(shape) != want.shape or jnp.dtype(dtype) != want.dtype:
            raise LayoutMismatchError(
                f"checkpoint {step} in {manager.directory} holds train_state{path} as {dtype}{list(shape)}, but this "
                f"config builds {want.dtype}{list(want.shape)}; resume it with the config it was written with"
            )
        host = np.frombuffer(data, jnp.dtype(dtype), int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
        arrays.append(jax.make_array_from_callback(want.shape, want.sharding, host.__getitem__))
    return arrays
