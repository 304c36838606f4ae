"""``SACConfig``: SAC's hyper-parameters (plain Python: imported by the JAX-free config layer).

The environment and the seed are not here: ``TrainConfig`` owns the env and the
runner owns the seed. Defaults are for Pendulum-v1 (torque ±2): 20k env steps
give a greedy return of about −170 over 32 episodes (seeds 0-3 all between
−175 and −169; SB3-zoo reaches −157 at 20k), learnt by ~10k steps, in ~10-15 s
after a ~10 s compile on a 2-core CPU (1,400-2,100 env steps/s, noisy).

The gradient steps are nearly all of the cost (stepping the envs alone runs at
~150k steps/s) and XLA runs these small matmuls on one core, so the networks
and the batch set the speed. Compared with SB3 and CleanRL (2×256, batch 256):
2×64 networks (rejax's size) make a gradient step ~10× cheaper, and batch 128
halves it again; seeds 0-3 learn Pendulum as well with batch 128 as with 256.
"""

import dataclasses

from vibe.networks.config import EncoderConfig


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Hyper-parameters of soft actor-critic with automatic entropy tuning (Haarnoja et al. 2018b)."""

    num_envs: int = 4  # environments stepped in parallel (vmapped); one train_step steps each once
    total_timesteps: int = 20_000  # env steps of the whole run (all envs together)
    learning_starts: int = 1_000  # env steps of uniform random actions before the first gradient step
    utd_ratio: float = 1.0  # gradient steps per env step; utd_ratio * num_envs must be a whole number
    buffer_size: int = 100_000  # replay capacity in transitions (oldest overwritten first)
    batch_size: int = 128  # transitions per gradient step
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # Polyak rate of the target critics: target <- tau * online + (1 - tau) * target
    lr: float = 1e-3  # Adam learning rate of the actor, the critics and log(alpha)
    init_alpha: float = 1.0  # initial entropy temperature alpha
    target_entropy_scale: float = 1.0  # target entropy = -target_entropy_scale * action_dim
    log_std_min: float = -5.0  # lower clip of the actor's log standard deviation (pre-tanh)
    log_std_max: float = 2.0  # upper clip of the actor's log standard deviation (pre-tanh)
    # The torso (--algo.encoder.kind mlp|cnn|vit); heads for the action space go on top.
    encoder: EncoderConfig = dataclasses.field(default_factory=lambda: EncoderConfig(activation="relu"))

    def __post_init__(self) -> None:
        for name in ("num_envs", "total_timesteps", "buffer_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SACConfig.{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.learning_starts, int) or self.learning_starts < 0:
            raise ValueError(f"SACConfig.learning_starts must be an integer >= 0, got {self.learning_starts!r}.")
        steps = self.utd_ratio * self.num_envs
        if not self.utd_ratio > 0 or abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(
                f"SACConfig.utd_ratio={self.utd_ratio!r} times num_envs={self.num_envs} must be a positive whole "
                "number of gradient steps per train_step; e.g. utd_ratio=1.0, or 0.5 with an even num_envs."
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"SACConfig.gamma must be in [0, 1], got {self.gamma!r}.")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"SACConfig.tau must be in (0, 1], got {self.tau!r}; 0.005 is usual (1 copies).")
        for name in ("lr", "init_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SACConfig.{name} must be > 0, got {getattr(self, name)!r}.")
        if not self.target_entropy_scale >= 0:
            raise ValueError(
                f"SACConfig.target_entropy_scale must be >= 0, got {self.target_entropy_scale!r}; 1.0 gives -|A|."
            )
        if not self.log_std_min < self.log_std_max:
            raise ValueError(
                f"SACConfig.log_std_min={self.log_std_min!r} must be < log_std_max={self.log_std_max!r}; "
                "-5 and 2 are usual."
            )
        if self.gradient_steps * self.batch_size > self.buffer_size:
            raise ValueError(
                f"SACConfig.buffer_size={self.buffer_size} is smaller than the batches one train_step draws "
                f"(utd_ratio * num_envs * batch_size = {self.gradient_steps} * {self.batch_size}); "
                "raise buffer_size or lower batch_size."
            )
        if self.num_envs > self.total_timesteps:
            raise ValueError(
                f"SACConfig.total_timesteps={self.total_timesteps} is less than one train_step "
                f"(num_envs={self.num_envs}); raise it or use fewer envs."
            )

    @property
    def gradient_steps(self) -> int:
        """Gradient steps per ``train_step``: ``utd_ratio * num_envs``."""
        return round(self.utd_ratio * self.num_envs)

    @property
    def steps_per_update(self) -> int:
        """Env steps of one ``train_step`` (the runner's unit): one per env."""
        return self.num_envs

    @property
    def num_updates(self) -> int:
        """``train_step`` calls of the run: ``total_timesteps // num_envs``."""
        return self.total_timesteps // self.num_envs
