"""``IQLConfig``: implicit Q-learning's hyper-parameters (plain Python: the config layer imports it).

Defaults are the paper's for locomotion (Kostrikov, Nair, Levine 2021, appendix B; JAX-CORL's
``iql.py``): expectile 0.7, inverse temperature 3, advantage weights clipped at 100, discount 0.99,
Polyak rate 0.005 of the target critics, Adam 3e-4, 2x256 relu networks, batch 256. The dataset's
``next.reward`` and ``next.done`` (terminated, not truncated) make the TD targets; the last frame of
an episode cut by a time limit has no recorded s' and is never sampled.
"""

import dataclasses

from vibe.algorithms.bc.config import Data, DataConfig
from vibe.networks.config import EncoderConfig


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """Implicit Q-learning (Discrete or bounded Box actions): expectile V, twin Q with a Polyak target, AWR actor."""

    data: Data = dataclasses.field(default_factory=DataConfig)
    num_updates: int = 20_000  # gradient steps of the run (one batch each; V, Q and actor in every step)
    lr: float = 3e-4  # Adam learning rate of the value, critics and actor
    expectile: float = 0.7  # tau of the expectile loss of V against min(Q1, Q2) (0.5: the mean; -> 1: the max)
    temperature: float = 3.0  # beta of the advantage weights exp(beta * (Q - V))
    max_weight: float = 100.0  # clip of the advantage weights
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # Polyak rate of the target critics
    log_std_min: float = -5.0  # clip of the Gaussian actor's state-independent log std (Box actions only)
    log_std_max: float = 2.0
    encoder: EncoderConfig = dataclasses.field(
        default_factory=lambda: EncoderConfig(hidden_sizes=(256, 256), activation="relu")
    )

    def __post_init__(self) -> None:
        if not isinstance(self.num_updates, int) or isinstance(self.num_updates, bool) or self.num_updates < 1:
            raise ValueError(f"IQLConfig.num_updates must be a positive integer, got {self.num_updates!r}")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"IQLConfig.expectile must be in (0, 1), got {self.expectile!r}; 0.7 is the paper's")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"IQLConfig.gamma must be in [0, 1], got {self.gamma!r}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"IQLConfig.tau must be in (0, 1], got {self.tau!r}")
        for name in ("lr", "max_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"IQLConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.temperature >= 0:
            raise ValueError(f"IQLConfig.temperature must be >= 0, got {self.temperature!r} (0: plain BC)")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"IQLConfig.log_std_min={self.log_std_min} must be < log_std_max={self.log_std_max}")

    @property
    def steps_per_update(self) -> int:
        """Samples per ``train_step``: the runner's unit, so the logged ``step`` is samples seen."""
        return self.data.batch_size
