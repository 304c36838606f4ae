"""What every training command shares: build the algorithm a TrainConfig names, run it."""

import logging
import sys

from vibe.algorithms.algorithm import Algorithm
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.dqn.dqn import DQN
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.ppo.ppo import PPO
from vibe.algorithms.sac.config import SACConfig
from vibe.algorithms.sac.sac import SAC
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
        env, env_params = registry.make(config.env)
    except ValueError as e:
        raise ValueError(f"TrainConfig.env: {e}") from e
    match config.algo:
        case PPOConfig():
            return PPO.make(config.algo, env, env_params, env_id=config.env)
        case DQNConfig():
            return DQN.make(config.algo, env, env_params, env_id=config.env)
        case SACConfig():
            return SAC.make(config.algo, env, env_params, env_id=config.env)
    raise TypeError(f"no algorithm for {type(config.algo).__name__}")


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
