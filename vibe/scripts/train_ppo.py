"""Train PPO on a gymnax environment; the default is CartPole-v1 with PureJaxRL's hyper-parameters.

    tools/bazelw run //vibe/scripts:train_ppo
    tools/bazelw run //vibe/scripts:train_ppo -- --algo.lr 3e-4 --exp-name lr3e-4
    tools/bazelw run //vibe/scripts:train_ppo -- --help

Expected on a 2-core CPU: a few seconds of compile, 500k env steps at over
100k steps/s, then a greedy evaluation over 32 episodes ending with
`eval/return_mean=500.0`. The run directory is
./checkpoints/cartpole_ppo/default under the directory the command ran from.
"""

import dataclasses
import logging
import sys

from vibe.algorithms.ppo.agent import PPO
from vibe.config.train_config import cli
from vibe.envs import gymnax_env
from vibe.train import runner


def main(argv: list[str] | None = None) -> runner.TrainResult:
    config = cli(argv, description=__doc__)
    env, env_params = gymnax_env.make(config.algo.env_name)
    algorithm = PPO(config.algo, env, env_params)
    try:
        return runner.train(algorithm, config.runner, run_name=config.name, hparams=dataclasses.asdict(config))
    except FileExistsError as e:
        logging.getLogger(__name__).error("%s", e)
        raise SystemExit(1) from e


if __name__ == "__main__":
    main(sys.argv[1:])
