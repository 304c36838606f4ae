"""Train double DQN on a gymnax environment; the default is CartPole-v1 for 100k env steps.

    tools/bazelw run //vibe/scripts:train_dqn
    tools/bazelw run //vibe/scripts:train_dqn -- --algo.lr 1e-3 --exp-name lr1e-3

Expected on a 2-core CPU: a greedy evaluation over 32 episodes with
`eval/return_mean` ≥ 475 after 100k env steps. The run directory is
./checkpoints/cartpole_dqn/default.
"""

import sys

from vibe.config import presets
from vibe.config.train_config import cli
from vibe.scripts import training
from vibe.train.runner import TrainResult


def main(argv: list[str] | None = None) -> TrainResult:
    return training.train(cli(argv, default=presets.get("cartpole_dqn"), description=__doc__))


if __name__ == "__main__":
    main(sys.argv[1:])
