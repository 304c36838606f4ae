"""TrainConfig: everything one training run needs, composed from the components' configs.

Plain Python and tyro, no JAX: parsing a command line never starts a backend.
"""

import dataclasses
import sys
from typing import Annotated

import tyro

from vibe.algorithms.ppo.config import PPOConfig
from vibe.train.config import RunnerConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A PPO training run."""

    # Name of the configuration; runs go to <output-dir>/<name>/<exp-name>.
    name: str = "cartpole_ppo"
    # Algorithm hyper-parameters (environment included).
    algo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    # How the run is driven: directories, seed, chunking, evaluation. Flags have no prefix.
    runner: Annotated[RunnerConfig, tyro.conf.arg(name="")] = dataclasses.field(default_factory=RunnerConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"TrainConfig.name={self.name!r} must be a non-empty name without '/'")


def cli(args: list[str] | None = None, *, description: str | None = None) -> TrainConfig:
    """Parses flags over the default TrainConfig.

    An unknown flag or an invalid value exits with status 2 and a message that
    names the field.
    """
    try:
        return tyro.cli(TrainConfig, default=TrainConfig(), args=args, description=description)
    except ValueError as e:  # tyro reports most validation errors itself; not all
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
