"""TrainConfig: everything one training run needs, composed from the components' configs.

Plain Python and tyro, no JAX: parsing a command line never starts a backend.
"""

import dataclasses
import sys
from typing import Annotated

import tyro

from vibe.algorithms.bc.config import BCConfig
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.core.usage import bazel_prog
from vibe.envs.config import WrapperConfig
from vibe.train.config import RunnerConfig

# The algorithm is chosen by the config's type; flags override its fields.
AlgoConfig = PPOConfig | DQNConfig | SACConfig | BCConfig | IQLConfig

ALGO_NAMES: dict[type, str] = {PPOConfig: "ppo", DQNConfig: "dqn", SACConfig: "sac", BCConfig: "bc", IQLConfig: "iql"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: environment, algorithm and how the run is driven."""

    # Name of the configuration; runs go to <output-dir>/<name>/<exp-name>.
    name: str = "cartpole_ppo"
    # Environment id: gymnax's (CartPole-v1, Pendulum-v1, Breakout-MinAtar, ...) or vibe's (PixelCartPole-v1, ...).
    env: str = "CartPole-v1"
    # Algorithm hyper-parameters; their type picks the algorithm.
    algo: AlgoConfig = dataclasses.field(default_factory=PPOConfig)
    # Observation wrappers on the plain env (crop, resize, grayscale, invert, frame stack), below training's auto-reset.
    wrappers: WrapperConfig = dataclasses.field(default_factory=WrapperConfig)
    # How the run is driven: directories, seeds, chunking, evaluation. Flags have no prefix.
    runner: Annotated[RunnerConfig, tyro.conf.arg(name="")] = dataclasses.field(default_factory=RunnerConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"TrainConfig.name={self.name!r} must be a non-empty name without '/'")
        if not self.env:
            raise ValueError("TrainConfig.env must name a gymnax environment, e.g. --env CartPole-v1")

    @property
    def algo_name(self) -> str:
        return ALGO_NAMES[type(self.algo)]


# Union fields become subcommands in tyro; with a default given, keep the
# default's type and expose its fields as flags (`--algo.lr`), as users expect.
TYRO_CONFIG = (tyro.conf.AvoidSubcommands,)


def cli(
    args: list[str] | None = None, *, default: TrainConfig | None = None, description: str | None = None
) -> TrainConfig:
    """Parses flags over `default` (the CartPole PPO run when None).

    An unknown flag or an invalid value exits with status 2 and a message that
    names the field.
    """
    default = default if default is not None else TrainConfig()
    try:
        return tyro.cli(
            TrainConfig, default=default, args=args, description=description, config=TYRO_CONFIG, prog=bazel_prog()
        )
    except ValueError as e:  # tyro reports most validation errors itself; not all
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
