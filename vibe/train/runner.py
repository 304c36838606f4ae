"""The host loop: init or resume, chunks of jitted updates, checkpoints, logs, greedy evaluation.

    result = runner.train(algorithm, config.runner, run_name="cartpole_ppo", hparams=config_dict)

The run directory `<cwd>/<output_dir>/<run_name>/<exp_name>` holds the orbax
checkpoints (one folder per saved update count), `config.json` (the resolved
config) and `metrics.jsonl` (one row per chunk, then one `eval/*` row).
Everything a run needs to continue lives in the algorithm's state, so a resume
restores one pytree and continues bit-for-bit.
"""

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any, cast

import jax
import numpy as np

from vibe.algorithms import metrics
from vibe.algorithms.algorithm import Algorithm
from vibe.checkpoint import manager as checkpoints
from vibe.logging import console, plot
from vibe.logging.metrics import MetricsWriter, truncate_metrics
from vibe.logging.wandb_logger import WandbLogger
from vibe.sharding import distributed, fsdp
from vibe.sharding import mesh as mesh_lib
from vibe.train import assets as assets_lib
from vibe.train.config import RunnerConfig
from vibe.train.loop import make_train_chunk

State = Any
# Host memory of one chunk's stacked batches on the streaming path (caps the updates per chunk).
STREAM_CHUNK_BYTES = 256 * 2**20
# The metric that picks the best checkpoint: the greedy evaluation's mean return (over seeds, if several).
BEST_METRIC = "eval/return_mean"

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    state: State  # the final run state
    run_dir: str
    eval_returns: np.ndarray | None  # greedy returns [episodes] ([seeds, episodes] with num_seeds > 1), None if off
    compile_seconds: float
    train_seconds: float  # wall time of the updates after compile, this process only
    env_steps: int  # per seed, at the end of this process
    num_seeds: int
    start_env_step: int = 0  # env step (per seed) this process started from: 0, or where a resume continued

    @property
    def steps_per_second(self) -> float:
        """Env steps per second after compile in this process, all seeds together."""
        return self.steps_this_process * self.num_seeds / max(self.train_seconds, 1e-9)

    @property
    def steps_this_process(self) -> int:
        return self.env_steps - self.start_env_step


def user_path(path: str) -> str:
    """A path as the user meant it: relative to where they ran the command.

    `bazel run` starts binaries inside the runfiles tree and says where the user
    stands in BUILD_WORKING_DIRECTORY.
    """
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def make_evaluate(algorithm: Algorithm, episodes: int, vmapped: bool) -> Any:
    """jit of ``algorithm.evaluate``: ``(state, key) -> returns`` ``[episodes]`` (``[seeds, episodes]`` when
    ``vmapped``). Jit it once per run: the state is an argument, so every evaluation reuses one executable."""

    def one(state: State, key: jax.Array) -> jax.Array:
        return algorithm.evaluate(state, key, episodes)

    return jax.jit(jax.vmap(one) if vmapped else one)


def evaluate_greedy(algorithm: Algorithm, state: State, key: jax.Array | np.ndarray, episodes: int) -> np.ndarray:
    """Greedy returns: [episodes] for one seed's state and key, [seeds, episodes] for a vmapped state."""
    return np.asarray(make_evaluate(algorithm, episodes, key.ndim > 1)(state, key))


def eval_summary(returns: np.ndarray) -> dict[str, Any]:
    """Mean, spread and, over seeds, the interquartile mean of per-seed means (Agarwal et al. 2021)."""
    stats: dict[str, Any] = {
        "eval/return_mean": float(returns.mean()),
        "eval/return_std": float(returns.std()),
        "eval/return_min": float(returns.min()),
        "eval/return_max": float(returns.max()),
        "eval/episodes": int(returns.shape[-1]),
    }
    if returns.ndim == 2:
        per_seed = np.sort(returns.mean(axis=1))
        quarter = len(per_seed) // 4
        stats["eval/return_iqm"] = float(per_seed[quarter : len(per_seed) - quarter].mean())
        stats["eval/return_mean/seeds"] = [float(x) for x in returns.mean(axis=1)]
    return stats


def train(
    algorithm: Algorithm, config: RunnerConfig, *, run_name: str, hparams: Mapping[str, Any], env_id: str
) -> TrainResult:
    """Trains `algorithm` for its `num_updates` (or resumes it), evaluating the greedy policy every
    `config.eval_every` updates and at the end. `hparams`: the run's whole config as JSON data (stored
    in `config.json` and in every checkpoint's assets); `env_id`: the env's name, for the assets."""
    console.setup_logging()
    mesh = make_run_mesh(config)
    run_dir = user_path(os.path.join(config.output_dir, run_name, config.exp_name))
    manager, resuming = checkpoints.initialize_checkpoint_dir(
        run_dir, config=config.checkpoint, overwrite=config.overwrite, resume=config.resume
    )
    primary = distributed.is_primary()  # only process 0 writes config, metrics, wandb and the plot
    wandb = WandbLogger.open(
        run_dir,
        mode=config.wandb_mode if primary else "disabled",
        project=config.wandb_project,
        name=f"{run_name}/{config.exp_name}",
        config=hparams,
        resuming=resuming,
    )
    try:
        with mesh_lib.set_mesh(mesh):
            result = _train(algorithm, config, mesh, manager, resuming, run_dir, hparams, env_id, wandb, primary)
    except BaseException:
        wandb.close(exit_code=1)
        try:
            manager.wait_until_finished()
            nothing_saved = manager.latest_step() is None
        finally:
            manager.close()
        # A new run that failed before its first checkpoint leaves nothing to resume: remove what it made, so
        # the next attempt is not refused for a directory that holds only a config and a log.
        if not resuming and primary and nothing_saved:
            shutil.rmtree(run_dir, ignore_errors=True)
            logger.info("Removed %s: the run failed before its first checkpoint", run_dir)
        raise
    _close(manager)
    wandb.close()
    if not primary:
        return result
    try:
        logger.info("Learning curve: %s", plot.plot_run(run_dir))
    except ValueError as e:  # nothing to draw yet (no finished episode): not worth failing a run
        logger.warning("No learning curve: %s", e)
    return result


def _close(manager: Any) -> None:
    """Waits for the save in flight (pending async saves complete before the process exits), then closes."""
    try:
        manager.wait_until_finished()
    finally:
        manager.close()


def log_fsdp_split(params: Any, shardings: Any) -> tuple[int, int]:
    """Logs how many parameter arrays (and MiB) FSDP splits and how many stay replicated; returns the counts.

    Said even when nothing crosses the size threshold, so a run with --fsdp-devices > 1 is never silently
    plain data parallelism."""
    split = kept = 0
    split_bytes = kept_bytes = 0
    for leaf, sharding in zip(jax.tree.leaves(params), jax.tree.leaves(shardings), strict=True):
        nbytes = int(np.prod(leaf.shape)) * leaf.dtype.itemsize
        if any(axis is not None for axis in sharding.spec):
            split, split_bytes = split + 1, split_bytes + nbytes
        else:
            kept, kept_bytes = kept + 1, kept_bytes + nbytes
    logger.info(
        "FSDP: %d parameter array(s) (%.2f MiB) split along %r, %d (%.2f MiB) replicated%s",
        split,
        split_bytes / fsdp.MiB,
        mesh_lib.FSDP_AXIS,
        kept,
        kept_bytes / fsdp.MiB,
        "" if split else f" (none reaches the {fsdp.MIN_SIZE_MBYTES:g} MiB threshold)",
    )
    return split, kept


class DeviceConfigError(ValueError):
    """`--devices`/`--fsdp-devices` do not fit the devices this run sees (a user error, not a bug)."""


def make_run_mesh(config: RunnerConfig) -> jax.sharding.Mesh:
    """The `(batch, fsdp)` mesh over the devices `config` asks for (all of them by default)."""
    devices = jax.devices()
    if config.devices > len(devices):
        raise DeviceConfigError(
            f"RunnerConfig.devices={config.devices} but only {len(devices)} device(s) are visible; "
            f"pass --devices 0 (all) or at most {len(devices)}"
        )
    if config.devices and jax.process_count() > 1 and config.devices != len(devices):
        raise DeviceConfigError("RunnerConfig.devices must be 0 (all devices) in a multi-process run")
    try:
        return mesh_lib.make_mesh(config.fsdp_devices, devices[: config.devices or len(devices)])
    except ValueError as e:
        raise DeviceConfigError(f"RunnerConfig.fsdp_devices={config.fsdp_devices}: {e}") from e


def _train(
    algorithm: Algorithm,
    config: RunnerConfig,
    mesh: jax.sharding.Mesh,
    manager: Any,
    resuming: bool,
    run_dir: str,
    hparams: Mapping[str, Any],
    env_id: str,
    wandb: WandbLogger,
    primary: bool,
) -> TrainResult:
    total_updates, steps_per_update = algorithm.num_updates, algorithm.steps_per_update
    seeds = [config.seed + i for i in range(config.num_seeds)]
    # numpy, not device arrays: under several processes a jit input must be the same host value everywhere.
    keys = np.stack([jax.random.split(jax.random.PRNGKey(seed)) for seed in seeds])  # [seeds, 2, 2]
    init_keys, eval_keys = keys[:, 0], keys[:, 1]
    # One seed runs as is; several run as one vmapped program (a leading seed axis on every leaf).
    vmapped = config.num_seeds > 1
    init = jax.vmap(algorithm.init) if vmapped else algorithm.init
    train_step: Any = jax.vmap(algorithm.train_step) if vmapped else algorithm.train_step
    # An offline algorithm's dataset (its ``data`` field, host arrays) goes onto the devices once and into
    # each chunk as an argument (see loop.py: a closed-over array would be embedded in the program).
    # Streaming instead (``data`` is a Dataset, not arrays): each chunk gets its updates' batches, stacked,
    # from the algorithm's loader, whose position every checkpoint records.
    data = getattr(algorithm, "data", None)
    streaming = data is not None and not isinstance(data, Mapping)
    if data is not None:

        def data_step(state: State, data: Any) -> tuple[State, Any]:
            return dataclasses.replace(cast(Any, algorithm), data=data).train_step(state)

        def batch_step(state: State, batch: Any) -> tuple[State, Any]:
            return cast(Any, algorithm).update(state, batch)

        step = batch_step if streaming else data_step
        train_step = jax.vmap(step, in_axes=(0, None)) if vmapped else step
    unit = "env steps" if data is None else "samples"  # what one logged step counts
    init_key, eval_key = (init_keys, eval_keys) if vmapped else (init_keys[0], eval_keys[0])

    # Placed by the roles the algorithm declares: env states and observations split over all devices (the
    # seed axis, if any, stays whole), shared statistics replicated, params and optimizer state by the FSDP
    # rule; init builds the state already split and each chunk keeps it so.
    roles = algorithm.roles(jax.eval_shape(algorithm.init, init_keys[0]))
    abstract_state = jax.eval_shape(init, init_key)
    shardings = fsdp.state_shardings(abstract_state, mesh, roles, batch_dim=1 if vmapped else 0)
    replicated = mesh_lib.replicated(mesh)
    if mesh.size > 1:
        logger.info("Mesh %s over %d device(s)", dict(mesh.shape), mesh.size)
    if config.fsdp_devices > 1:
        log_fsdp_split(abstract_state.params, shardings.params)

    record = checkpoints.best_record(manager) if resuming else None
    best = (int(record["step"]), float(record["value"])) if record else None
    if resuming:
        abstract_state = jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            abstract_state,
            shardings,
        )
        start_update, state = checkpoints.restore(manager, abstract_state)
        # Rows logged after the restored checkpoint belong to the lost tail of the run.
        dropped = 0
        if primary:
            dropped = truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), start_update * steps_per_update)
        logger.info(
            "Resuming %s from update %d/%d (%s %s)%s",
            run_dir,
            start_update,
            total_updates,
            unit.removesuffix("s"),
            f"{start_update * steps_per_update:,}",
            f"; dropped {dropped} metric rows logged after that checkpoint" if dropped else "",
        )
        if best is not None and best[0] not in manager.all_steps():  # lost with the tail, or never committed
            best = None
    else:
        start_update, state = 0, jax.jit(init, out_shardings=shardings)(init_key)
        if primary:
            with open(os.path.join(run_dir, "config.json"), "w") as f:
                json.dump(hparams, f, indent=2, default=str)
        logger.info(
            "Training %s on %s: %d updates × %d %s = %s steps%s; run directory %s",
            algorithm.name,
            env_id,
            total_updates,
            steps_per_update,
            unit,
            f"{total_updates * steps_per_update:,}",
            f" × {len(seeds)} seeds" if vmapped else "",
            run_dir,
        )
    run_assets = assets_lib.run_assets(algorithm, hparams, env_id, seeds)
    loader = None
    if streaming:
        # All seeds of a vmapped run see the same batches (their inits and keys differ).
        position = checkpoints.read_assets(manager, start_update).get("loader") if resuming else None
        loader = cast(Any, algorithm).stream(mesh, seed=config.seed, position=position)

    def save(update: int, state: State, new_best: tuple[str, float] | None = None) -> None:
        assets = {**run_assets, "obs_stats": assets_lib.obs_stats_json(algorithm, state)}
        if loader is not None:
            assets["loader"] = loader.get_state()  # where the next update's batch starts
        checkpoints.save(manager, update, state, assets, new_best=new_best)

    end_update = total_updates
    if config.stop_after_updates:
        end_update = min(total_updates, start_update + config.stop_after_updates)
    save_interval = config.checkpoint.interval(total_updates)
    eval_interval = config.eval_interval(total_updates)
    chunk_size = max(1, min(config.updates_per_chunk, total_updates))

    if loader is not None:
        # A chunk's stacked batches are host memory too: at most STREAM_CHUNK_BYTES of them per chunk.
        chunk_size = max(1, min(chunk_size, STREAM_CHUNK_BYTES // loader.batch_bytes()))

    start = time.perf_counter()
    if loader is not None:
        data_args: tuple[Any, ...] = (loader.abstract_chunk(chunk_size),)
        data_shardings = jax.tree.map(lambda x: x.sharding, data_args[0])
    else:
        data_args = () if data is None else (jax.device_put(data, replicated),)
        data_shardings = replicated if data_args else None
    chunk = make_train_chunk(
        train_step, shardings, replicated, data_shardings=data_shardings, stacked=loader is not None
    )
    compiled = chunk.lower(state, np.int32(chunk_size), *data_args).compile()
    compile_seconds = time.perf_counter() - start
    logger.info("Compiled the train chunk (%d updates, %d seed(s)) in %.1f s", chunk_size, len(seeds), compile_seconds)
    evaluate = make_evaluate(algorithm, config.eval_episodes, vmapped) if config.eval_episodes else None

    def next_multiple(update: int, interval: int) -> int:
        return (update // interval + 1) * interval if interval else end_update

    def eval_key_at(update: int) -> jax.Array:
        # The evaluation key depends on the update only, so a resumed run evaluates as a straight one.
        if vmapped:
            return jax.vmap(jax.random.fold_in, in_axes=(0, None))(eval_key, update)
        return jax.random.fold_in(eval_key, update)

    def is_eval_point(update: int) -> bool:
        return evaluate is not None and (update % eval_interval == 0 or update == total_updates)

    update, train_seconds, eval_returns = start_update, 0.0, None
    with MetricsWriter(os.path.join(run_dir, "metrics.jsonl"), enabled=primary) as writer:

        def evaluate_at(update: int, state: State, saved: bool) -> np.ndarray:
            """Logs a greedy evaluation at `update`; a new best is saved (unless `saved`) and marked best.

            Evaluated before its save point's save, so the save's keep decision already knows the new best
            and drops the one it supersedes."""
            nonlocal best
            assert evaluate is not None
            returns = np.asarray(evaluate(state, eval_key_at(update)))
            stats = eval_summary(returns)
            writer.write(update * steps_per_update, stats)
            wandb.log(update * steps_per_update, stats)
            value = stats[BEST_METRIC]
            at_save = update % save_interval == 0 or update == end_update
            if best is None or value > best[1]:
                if saved:  # the restored step of a resumed run: already on disk
                    manager.mark_best(update, BEST_METRIC, value)
                else:
                    save(update, state, new_best=(BEST_METRIC, value))
                best = (update, value)
            elif at_save and not saved:
                save(update, state)
            return returns

        if resuming and is_eval_point(start_update):
            # The evaluation at the restored step was dropped with the lost tail (or never logged, when the
            # process died between the save and the evaluation): evaluate it again, as the straight run did.
            eval_returns = evaluate_at(start_update, state, saved=True)
        bar = console.progress_bar(total_updates * steps_per_update, initial=start_update * steps_per_update)
        try:
            while update < end_update:
                # Chunks end on save and evaluation points, so both happen between two chunks.
                stop = min(next_multiple(update, save_interval), next_multiple(update, eval_interval), end_update)
                k = min(chunk_size, stop - update)
                t0 = time.perf_counter()
                if loader is not None:
                    data_args = (loader.next_chunk(k, chunk_size),)
                state, totals = compiled(state, np.int32(k), *data_args)
                totals = jax.device_get(totals)  # the one host sync per chunk
                elapsed = time.perf_counter() - t0
                train_seconds += elapsed
                update += k
                row = metrics.summarize_seeds(totals, k) if vmapped else metrics.summarize(totals, k)
                row.update(update=update, time=round(train_seconds, 3), sps=k * steps_per_update * len(seeds) / elapsed)
                writer.write(update * steps_per_update, row)
                wandb.log(update * steps_per_update, row)
                bar.update(k * steps_per_update)
                if "episode/return_mean" in row:
                    bar.set_postfix(ret=f"{row['episode/return_mean']:.1f}", refresh=False)
                if is_eval_point(update):
                    eval_returns = evaluate_at(update, state, saved=False)
                elif update % save_interval == 0 or update == end_update:
                    save(update, state)
        finally:
            bar.close()
            if loader is not None:
                loader.close()

        env_steps = update * steps_per_update
        logger.info(
            "Trained %s %s × %d seed(s) in %.1f s (%s %s/s after compile)",
            f"{(update - start_update) * steps_per_update:,}",
            unit,
            len(seeds),
            train_seconds,
            f"{(update - start_update) * steps_per_update * len(seeds) / max(train_seconds, 1e-9):,.0f}",
            "steps" if data is None else "samples",
        )
        if update < total_updates:
            logger.info("Stopped at update %d of %d; continue with --resume", update, total_updates)
            eval_returns = None
        if eval_returns is not None:
            stats = eval_summary(eval_returns)
            logger.info(
                "Greedy evaluation over %d episodes%s: eval/return_mean=%.1f ± %.1f (min %.1f, max %.1f)%s",
                config.eval_episodes,
                f" × {len(seeds)} seeds" if vmapped else "",
                stats["eval/return_mean"],
                stats["eval/return_std"],
                stats["eval/return_min"],
                stats["eval/return_max"],
                f", IQM over seeds {stats['eval/return_iqm']:.1f}" if vmapped else "",
            )
        if best is not None:
            logger.info("Best checkpoint: update %d (%s=%.1f)", best[0], BEST_METRIC, best[1])
    logger.info("Metrics: %s", os.path.join(run_dir, "metrics.jsonl"))
    start_env_step = start_update * steps_per_update
    return TrainResult(
        state, run_dir, eval_returns, compile_seconds, train_seconds, env_steps, len(seeds), start_env_step
    )
