"""``PPOConfig``: PPO's hyper-parameters (plain Python: imported by the JAX-free config layer).

Defaults are PureJaxRL's CartPole settings; with them PPO solves CartPole-v1
(greedy return 500) in 500k env steps.
"""

import dataclasses
import math

from vibe.networks.config import EncoderConfig


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of PPO (Schulman et al. 2017) with discrete or continuous (Box) actions.

    ``normalize_obs`` wraps the vectorised training envs in
    ``vibe.envs.normalize.NormalizeObservation``: observations (and the final
    observations used to bootstrap truncations) are standardised with a running
    mean and variance shared by all envs and clipped to [-10, 10]. The statistics
    live in the env state, so checkpoints and resume cover them, and the greedy
    policy applies the trained state's (frozen) statistics to raw observations.
    """

    num_envs: int = 4  # environments stepped in parallel (vmapped)
    num_steps: int = 128  # steps per rollout per env
    total_timesteps: int = 500_000  # env steps of the whole run (all envs together)
    update_epochs: int = 4  # passes over each rollout
    num_minibatches: int = 4  # minibatches per pass; must divide num_envs * num_steps
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # GAE's lambda (bias-variance trade-off of the advantage)
    clip_eps: float = 0.2  # clip range of the probability ratio and of the value update
    ent_coef: float = 0.01  # weight of the entropy bonus
    vf_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float = 0.5  # global gradient-norm clip
    lr: float = 2.5e-4  # Adam learning rate (initial value when annealed)
    anneal_lr: bool = True  # decay the learning rate linearly to 0 over num_updates
    # The torso (--algo.encoder.kind mlp|cnn|vit); heads for the action space go on top.
    encoder: EncoderConfig = dataclasses.field(default_factory=lambda: EncoderConfig(activation="tanh"))
    shared_encoder: bool = False  # one torso under both heads (CleanRL's Atari PPO) instead of two
    init_log_std: float = 0.0  # Box actions only: initial log standard deviation of the Gaussian policy
    normalize_obs: bool = False  # standardise observations with running mean/var kept in the env state

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PPOConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"PPOConfig.lr must be > 0, got {self.lr!r}; 2.5e-4 is a good start for CartPole.")
        for name in ("clip_eps", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)!r}.")
        for name in ("ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_minibatches={self.num_minibatches} must divide num_envs * num_steps = "
                f"{self.num_envs} * {self.num_steps} = {self.batch_size}; pick a divisor of {self.batch_size}."
            )
        if self.batch_size > self.total_timesteps:
            raise ValueError(
                f"PPOConfig.total_timesteps={self.total_timesteps} is less than one rollout "
                f"(num_envs * num_steps = {self.batch_size}); raise it or shrink the rollout."
            )
        if not math.isfinite(self.init_log_std):
            raise ValueError(
                f"PPOConfig.init_log_std must be a finite number, got {self.init_log_std!r}; 0.0 (std 1) is usual."
            )
        for name in ("normalize_obs", "shared_encoder"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PPOConfig.{name} must be True or False, got {getattr(self, name)!r}.")

    @property
    def batch_size(self) -> int:
        """Env steps per rollout (and samples per update): ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def steps_per_update(self) -> int:
        """Env steps of one update (the runner's unit): ``batch_size``."""
        return self.batch_size

    @property
    def minibatch_size(self) -> int:
        """Samples per gradient step: ``batch_size // num_minibatches``."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Rollout-and-update iterations of the run: ``total_timesteps // batch_size``."""
        return self.total_timesteps // self.batch_size
