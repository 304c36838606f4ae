"""What every training command shares: build the algorithm a TrainConfig names, run it."""

import dataclasses
import logging
import sys

from vibe.algorithms.dqn.agent import DQN
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.ppo.agent import PPO
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.agent import SAC
from vibe.algorithms.sac.config import SACConfig
from vibe.config.train_config import TrainConfig
from vibe.envs import gymnax_env
from vibe.sharding import distributed
from vibe.train import runner
from vibe.train.algorithm import Algorithm

logger = logging.getLogger(__name__)


def make_algorithm(config: TrainConfig) -> Algorithm:
    """The algorithm of `config.algo`'s type on `config.env`."""
    try:
        env, env_params = gymnax_env.make(config.env)
    except ValueError as e:
        raise SystemExit(f"error: TrainConfig.env: {e}") from e
    match config.algo:
        case PPOConfig():
            return PPO(config.algo, env, env_params)
        case DQNConfig():
            return DQN(config.algo, env, env_params)
        case SACConfig():
            return SAC(config.algo, env, env_params)
    raise TypeError(f"no algorithm for {type(config.algo).__name__}")


def train(config: TrainConfig) -> runner.TrainResult:
    """Trains and evaluates `config`. A refused run directory (exists without --resume/--overwrite,
    or nothing to resume) exits with status 1 and a one-line reason, touching nothing; device and
    multi-host settings that do not fit the machine exit with status 2, like any bad flag."""
    run = config.runner
    try:
        # Before anything touches a device: building the env already does.
        distributed.initialize(run.coordinator_address or None, run.num_processes, run.process_id)
    except ValueError as e:
        print(f"error: RunnerConfig (multi-host): {e}", file=sys.stderr)
        raise SystemExit(2) from e
    algorithm = make_algorithm(config)
    try:
        return runner.train(algorithm, config.runner, run_name=config.name, hparams=dataclasses.asdict(config))
    except (FileExistsError, FileNotFoundError) as e:
        logger.error("%s", e)
        raise SystemExit(1) from e
    except runner.DeviceConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
