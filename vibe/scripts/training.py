"""What every training command shares: build the algorithm a TrainConfig names, run it."""

import logging
import os
import sys
from typing import Any

import jax

from vibe.algorithms.algorithm import Algorithm
from vibe.algorithms.bc.config import BCConfig
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.config.train_config import TrainConfig
from vibe.core import serialize
from vibe.envs import registry
from vibe.sharding import distributed
from vibe.train import runner

logger = logging.getLogger(__name__)


def make_algorithm(config: TrainConfig) -> Algorithm:
    """The algorithm of `config.algo`'s type on `config.env`; a config that cannot work (an unknown env, an
    encoder that cannot read the env's observations) raises ValueError naming the field, before anything
    compiles."""
    try:
        env, env_params = registry.make(config.env, config.wrappers)
    except ValueError as e:
        message = str(e)
        if message.startswith("WrapperConfig."):  # a wrapper that cannot read the env's observations
            raise ValueError(f"TrainConfig.wrappers.{message.removeprefix('WrapperConfig.')}") from e
        raise ValueError(f"TrainConfig.env: {message}") from e
    if isinstance(config.algo, BCConfig | IQLConfig):
        return make_offline(config, env, env_params)
    # Each algorithm's module is imported when a run uses it: a run pays only for its own imports
    # (DQN's brings flashbax, the offline ones the data stack).
    match config.algo:
        case PPOConfig():
            from vibe.algorithms.ppo.ppo import PPO

            return PPO.make(config.algo, env, env_params, env_id=config.env)
        case DQNConfig():
            from vibe.algorithms.dqn.dqn import DQN

            return DQN.make(config.algo, env, env_params, env_id=config.env)
        case SACConfig():
            from vibe.algorithms.sac.sac import SAC

            return SAC.make(config.algo, env, env_params, env_id=config.env)
    raise TypeError(f"no algorithm for {type(config.algo).__name__}")


def enable_compilation_cache(directory: str) -> None:
    """Turns on JAX's persistent compilation cache in ``directory`` (empty: off), as openpi does with
    ``~/.cache/jax``. A test run under ``bazel test`` keeps its cache in its own ``TEST_TMPDIR``, so tests
    neither read nor write the user's."""
    if not directory:
        return
    if "TEST_TMPDIR" in os.environ:
        directory = os.path.join(os.environ["TEST_TMPDIR"], "jax_cache")
    directory = os.path.expanduser(directory)
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    # Every program the run compiles is worth keeping: the train chunk, init and evaluation all take seconds.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def make_offline(config: TrainConfig, env: Any, env_params: Any) -> Algorithm:
    """An offline algorithm on its dataset, checked against ``config.env``: read into host arrays here
    (``--data.loader memory``) or opened for the streaming loader (``stream``).

    The dataset must have been recorded in ``config.env`` (``meta/vibe.json``), where evaluation runs."""
    from vibe.algorithms.bc import data as offline_data
    from vibe.algorithms.bc.bc import BC
    from vibe.algorithms.iql.iql import IQL

    algo = config.algo
    assert isinstance(algo, BCConfig | IQLConfig)
    iql = isinstance(algo, IQLConfig)
    frames, stats = offline_data.open_frames(
        algo.data, env, env_params, env_id=config.env, owner=f"preset {config.name}", transitions=iql
    )
    data = frames if algo.data.loader == "stream" else frames.arrays()
    recorded = offline_data.dataset_env(algo.data, config.env)
    if recorded != config.env:
        raise offline_data.DatasetError(
            f"{offline_data.dataset_root(algo.data)} was recorded in {recorded} (meta/vibe.json 'env') but "
            f"TrainConfig.env is {config.env}; pass --env {recorded} or a dataset recorded in {config.env}"
        )
    if isinstance(algo, IQLConfig):
        return IQL.make(algo, env, env_params, env_id=config.env, data=data, norm_stats=stats)
    return BC.make(algo, env, env_params, env_id=config.env, data=data, norm_stats=stats)


def train(config: TrainConfig) -> runner.TrainResult:
    """Trains and evaluates `config`. A config that cannot work exits with status 2 and a one-line reason
    before the run directory is touched; a refused run directory (exists without --resume/--overwrite,
    or nothing to resume) exits with status 1, touching nothing; device and multi-host settings that do
    not fit the machine exit with status 2, like any bad flag."""
    run = config.runner
    try:
        # Before anything touches a device: building the env already does.
        distributed.initialize(run.coordinator_address or None, run.num_processes, run.process_id)
    except ValueError as e:
        print(f"error: RunnerConfig (multi-host): {e}", file=sys.stderr)
        raise SystemExit(2) from e
    enable_compilation_cache(run.compilation_cache)
    try:
        algorithm = make_algorithm(config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    hparams = serialize.to_json(config)
    try:
        return runner.train(algorithm, config.runner, run_name=config.name, hparams=hparams, env_id=config.env)
    except (FileExistsError, FileNotFoundError) as e:
        logger.error("%s", e)
        raise SystemExit(1) from e
    except runner.DeviceConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
