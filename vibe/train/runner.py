"""The host loop: init, chunks of jitted updates, logs, final greedy evaluation.

    result = runner.train(algorithm, config.runner, run_name="cartpole_ppo", hparams=config_dict)

Writes into the run directory `<cwd>/<output_dir>/<run_name>/<exp_name>`:
`config.json` (the resolved config) and `metrics.jsonl` (one row per chunk,
then one `eval/*` row).
"""

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.envs.evaluate import evaluate
from vibe.logging import console
from vibe.logging.metrics import MetricsWriter
from vibe.train.algorithm import Algorithm, State
from vibe.train.config import RunnerConfig
from vibe.train.loop import make_train_chunk, summarize, summarize_seeds

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    state: State  # the final run state
    run_dir: str
    eval_returns: np.ndarray | None  # greedy returns [episodes] ([seeds, episodes] with num_seeds > 1), None if off
    compile_seconds: float
    train_seconds: float  # wall time of the updates after compile
    env_steps: int  # per seed
    num_seeds: int

    @property
    def steps_per_second(self) -> float:
        """Env steps per second after compile, all seeds together."""
        return self.env_steps * self.num_seeds / max(self.train_seconds, 1e-9)


def user_path(path: str) -> str:
    """A path as the user meant it: relative to where they ran the command.

    `bazel run` starts binaries inside the runfiles tree and says where the user
    stands in BUILD_WORKING_DIRECTORY.
    """
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def prepare_run_dir(run_dir: str, *, overwrite: bool) -> None:
    """Creates the run directory; an existing one is never deleted unless asked."""
    if os.path.exists(run_dir) and os.listdir(run_dir):
        if not overwrite:
            raise FileExistsError(
                f"run directory {run_dir} already exists; pass --overwrite to start over "
                "or --exp-name <name> for a new run"
            )
        logger.info("Wiped run directory %s", run_dir)
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)


def evaluate_greedy(algorithm: Algorithm, state: State, key: jax.Array, episodes: int) -> np.ndarray:
    """Greedy returns: [episodes] for one seed's state and key, [seeds, episodes] for a vmapped state."""

    def one(state: State, key: jax.Array) -> jax.Array:
        return evaluate(algorithm.env, algorithm.env_params, algorithm.greedy_policy(state), key, num_episodes=episodes)

    return np.asarray(jax.jit(one if key.ndim == 1 else jax.vmap(one))(state, key))


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
        middle = per_seed[quarter : len(per_seed) - quarter]
        stats["eval/return_iqm"] = float(middle.mean())
        stats["eval/return_mean/seeds"] = [float(x) for x in returns.mean(axis=1)]
    return stats


def train(algorithm: Algorithm, config: RunnerConfig, *, run_name: str, hparams: Mapping[str, Any]) -> TrainResult:
    """Trains `algorithm` for its `num_updates` and evaluates the greedy policy."""
    console.setup_logging()
    run_dir = user_path(os.path.join(config.output_dir, run_name, config.exp_name))
    prepare_run_dir(run_dir, overwrite=config.overwrite)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(hparams, f, indent=2, default=str)

    total_updates = algorithm.num_updates
    total_steps = total_updates * algorithm.steps_per_update
    logger.info(
        "Training %s on %s: %d updates × %d env steps = %s steps; run directory %s",
        algorithm.name,
        getattr(algorithm.env, "name", type(algorithm.env).__name__),
        total_updates,
        algorithm.steps_per_update,
        f"{total_steps:,}",
        run_dir,
    )

    seeds = [config.seed + i for i in range(config.num_seeds)]
    keys = jnp.stack([jax.random.split(jax.random.PRNGKey(seed)) for seed in seeds])  # [seeds, 2, 2]
    init_keys, eval_keys = keys[:, 0], keys[:, 1]
    # One seed runs as is; several run as one vmapped program (a leading seed axis on every leaf).
    vmapped = config.num_seeds > 1
    if vmapped:
        state = jax.jit(jax.vmap(algorithm.init))(init_keys)
        train_step = jax.vmap(algorithm.train_step)
    else:
        state = jax.jit(algorithm.init)(init_keys[0])
        train_step = algorithm.train_step
    chunk_size = min(config.updates_per_chunk, total_updates)

    start = time.perf_counter()
    train_chunk = make_train_chunk(train_step)
    compiled = train_chunk.lower(state, jnp.int32(chunk_size)).compile()
    compile_seconds = time.perf_counter() - start
    logger.info("Compiled the train chunk (%d updates, %d seed(s)) in %.1f s", chunk_size, len(seeds), compile_seconds)

    writer = MetricsWriter(os.path.join(run_dir, "metrics.jsonl"))
    steps_per_update = algorithm.steps_per_update
    bar = console.progress_bar(total_updates * steps_per_update)
    update, train_seconds = 0, 0.0
    try:
        while update < total_updates:
            k = min(chunk_size, total_updates - update)
            t0 = time.perf_counter()
            state, totals = compiled(state, jnp.int32(k))
            totals = jax.device_get(totals)  # the one host sync per chunk
            elapsed = time.perf_counter() - t0
            train_seconds += elapsed
            update += k
            row = summarize_seeds(totals, k) if vmapped else summarize(totals, k)
            row.update(update=update, time=round(train_seconds, 3), sps=k * steps_per_update * len(seeds) / elapsed)
            writer.write(update * steps_per_update, row)
            bar.update(k * steps_per_update)
            if "episode/return_mean" in row:
                bar.set_postfix(ret=f"{row['episode/return_mean']:.1f}", refresh=False)
    finally:
        bar.close()

    env_steps = total_updates * steps_per_update
    logger.info(
        "Trained %s env steps × %d seed(s) in %.1f s (%s steps/s after compile)",
        f"{env_steps:,}",
        len(seeds),
        train_seconds,
        f"{env_steps * len(seeds) / max(train_seconds, 1e-9):,.0f}",
    )

    eval_returns = None
    if config.eval_episodes:
        eval_returns = evaluate_greedy(algorithm, state, eval_keys if vmapped else eval_keys[0], config.eval_episodes)
        stats = eval_summary(eval_returns)
        writer.write(env_steps, stats)
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
    writer.close()
    logger.info("Metrics: %s", os.path.join(run_dir, "metrics.jsonl"))
    return TrainResult(state, run_dir, eval_returns, compile_seconds, train_seconds, env_steps, len(seeds))
