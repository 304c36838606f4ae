"""Train any registered preset; flags override its fields.

    tools/bazelw run //vibe/scripts:train -- cartpole_ppo
    tools/bazelw run //vibe/scripts:train -- pendulum_sac --algo.lr 1e-3
    tools/bazelw run //vibe/scripts:train -- debug            # seconds: checks a setup
    tools/bazelw run //vibe/scripts:train -- --help           # lists the presets

An unknown preset name exits with status 2 and the closest names.
"""

import sys

from vibe.config import presets
from vibe.scripts import training
from vibe.train.runner import TrainResult


def main(argv: list[str] | None = None) -> TrainResult:
    return training.train(presets.cli(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
