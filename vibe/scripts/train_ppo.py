"""Train PPO on a gymnax environment; the default is CartPole-v1 with PureJaxRL's hyper-parameters.

    tools/bazelw run //vibe/scripts:train_ppo
    tools/bazelw run //vibe/scripts:train_ppo -- --algo.lr 3e-4 --exp-name lr3e-4
    tools/bazelw run //vibe/scripts:train_ppo -- --help

Expected on a 2-core CPU: a few seconds of compile, 500k env steps at over
100k steps/s, then a greedy evaluation over 32 episodes ending with
`eval/return_mean=500.0`. The run directory is
./checkpoints/cartpole_ppo/default under the directory the command ran from.
"""

import sys

from vibe.config import presets
from vibe.config.train_config import cli
from vibe.scripts import training
from vibe.train.runner import TrainResult


def main(argv: list[str] | None = None) -> TrainResult:
    return training.train(cli(argv, default=presets.get("cartpole_ppo"), description=__doc__))


if __name__ == "__main__":
    main(sys.argv[1:])
