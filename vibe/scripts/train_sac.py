"""Train SAC on a continuous-action gymnax environment; the default is Pendulum-v1 (torque ±2) for 20k steps.

    tools/bazelw run //vibe/scripts:train_sac
    tools/bazelw run //vibe/scripts:train_sac -- --algo.lr 3e-4 --exp-name lr3e-4

Expected on a 2-core CPU: a greedy evaluation over 32 episodes with
`eval/return_mean` ≥ −200 after 20k env steps. The run directory is
./checkpoints/pendulum_sac/default.
"""

import sys

from vibe.config import presets
from vibe.config.train_config import cli
from vibe.scripts import training
from vibe.train.runner import TrainResult


def main(argv: list[str] | None = None) -> TrainResult:
    return training.train(cli(argv, default=presets.get("pendulum_sac"), description=__doc__))


if __name__ == "__main__":
    main(sys.argv[1:])
