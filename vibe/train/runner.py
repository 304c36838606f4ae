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
from vibe.train.loop import make_train_chunk, summarize

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    state: State  # the final run state
    run_dir: str
    eval_returns: np.ndarray | None  # [eval_episodes] greedy returns, or None when disabled
    compile_seconds: float
    train_seconds: float  # wall time of the updates after compile
    env_steps: int

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / max(self.train_seconds, 1e-9)


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

    init_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed))
    state = algorithm.init(init_key)
    chunk_size = min(config.updates_per_chunk, total_updates)

    start = time.perf_counter()
    train_chunk = make_train_chunk(algorithm.train_step)
    compiled = train_chunk.lower(state, jnp.int32(chunk_size)).compile()
    compile_seconds = time.perf_counter() - start
    logger.info("Compiled the train chunk (%d updates) in %.1f s", chunk_size, compile_seconds)

    writer = MetricsWriter(os.path.join(run_dir, "metrics.jsonl"))
    bar = console.progress_bar(total_steps)
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
            row = summarize(totals, k)
            row.update(update=update, time=round(train_seconds, 3), sps=k * algorithm.steps_per_update / elapsed)
            writer.write(update * algorithm.steps_per_update, row)
            bar.update(k * algorithm.steps_per_update)
            if "episode/return_mean" in row:
                bar.set_postfix(ret=f"{row['episode/return_mean']:.1f}", refresh=False)
    finally:
        bar.close()

    env_steps = total_updates * algorithm.steps_per_update
    logger.info(
        "Trained %s env steps in %.1f s (%s steps/s after compile)",
        f"{env_steps:,}",
        train_seconds,
        f"{env_steps / max(train_seconds, 1e-9):,.0f}",
    )

    eval_returns = None
    if config.eval_episodes:
        eval_returns = np.asarray(
            evaluate(
                algorithm.env,
                algorithm.env_params,
                algorithm.greedy_policy(state),
                eval_key,
                num_episodes=config.eval_episodes,
            )
        )
        stats = {
            "eval/return_mean": float(eval_returns.mean()),
            "eval/return_std": float(eval_returns.std()),
            "eval/return_min": float(eval_returns.min()),
            "eval/return_max": float(eval_returns.max()),
            "eval/episodes": len(eval_returns),
        }
        writer.write(env_steps, stats)
        logger.info(
            "Greedy evaluation over %d episodes: eval/return_mean=%.1f ± %.1f (min %.1f, max %.1f)",
            len(eval_returns),
            stats["eval/return_mean"],
            stats["eval/return_std"],
            stats["eval/return_min"],
            stats["eval/return_max"],
        )
    writer.close()
    logger.info("Metrics: %s", os.path.join(run_dir, "metrics.jsonl"))
    return TrainResult(state, run_dir, eval_returns, compile_seconds, train_seconds, env_steps)
