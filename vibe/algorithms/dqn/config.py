"""``DQNConfig``: DQN's hyper-parameters (plain Python: imported by the JAX-free config layer).

The environment and the seed are not here: the train config owns the env, the
runner owns the seed. Defaults are tuned for CartPole-v1 on a small CPU: 8
envs, one gradient step (batch 192) per 8 env steps, a high learning rate
annealed to 0, a Polyak target update (tau 0.01) after every gradient step,
Huber delta 10, a relu MLP of 128 x 128.

Why Polyak: with a hard target copy every 64 gradient steps (batch 128) every
seed passed 475 during training, but the *final* greedy return swung with the
last copies (final 349, 500, 446, 457, 107 on seeds 0-4 in a sweep). A slowly
moving target steadies the end.

Why 128 x 128: with 64 x 64 (and the rest as now) 27 of 32 seeds ended at a
greedy return >= 475, and the other 5 collapsed to 97-456; a change of float
rounding alone (one seed run alone or vmapped beside others) moved seed 0 from
500 to 165. With 128 x 128, 62 of 64 seeds (keys 100-131, 200-231, vmapped)
ended >= 475, the other two at 408 and 445. Measured sweeps, 100k env steps:
lr 2.5e-3 (5 of 32), gamma 0.98 (27), batch 256 (27) and exploration over 10%
of the run (19) did worse.
"""

import dataclasses

from vibe.networks.config import EncoderConfig


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Hyper-parameters of double DQN with a target network and the Huber loss."""

    num_envs: int = 8  # environments stepped in parallel (vmapped)
    train_frequency: int = 1  # times every env is stepped per train_step, before its gradient steps
    gradient_steps: int = 1  # gradient steps per train_step (once learning_starts env steps are done)
    total_timesteps: int = 100_000  # env steps of the whole run (all envs together)
    buffer_size: int = 100_000  # replay buffer capacity in transitions
    batch_size: int = 192  # transitions per gradient step, sampled uniformly from the buffer
    learning_starts: int = 1_000  # env steps of warm-up (random-ish data) before the first gradient step
    gamma: float = 0.99  # discount factor
    lr: float = 5e-3  # Adam learning rate (initial value when annealed)
    anneal_lr: bool = True  # decay the learning rate linearly to 0 over the run's gradient steps (steadies the end)
    max_grad_norm: float = 10.0  # global gradient-norm clip
    huber_delta: float = 10.0  # Huber loss: quadratic for TD errors below this, linear above (CartPole Q reaches 100)
    target_update_interval: int = 1  # gradient steps between target-network updates
    tau: float = 0.01  # target update rate: target <- tau * online + (1 - tau) * target (1.0 = hard copy)
    start_e: float = 1.0  # epsilon of epsilon-greedy exploration at the first env step
    end_e: float = 0.04  # epsilon after the linear decay
    exploration_fraction: float = 0.2  # fraction of total_timesteps over which epsilon decays linearly
    # The torso (--algo.encoder.kind mlp|cnn|vit); heads for the action space go on top.
    encoder: EncoderConfig = dataclasses.field(
        default_factory=lambda: EncoderConfig(hidden_sizes=(128, 128), activation="relu")
    )

    def __post_init__(self) -> None:
        for name in (
            "num_envs",
            "train_frequency",
            "gradient_steps",
            "total_timesteps",
            "buffer_size",
            "batch_size",
            "target_update_interval",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DQNConfig.{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.learning_starts, int) or self.learning_starts < 0:
            raise ValueError(f"DQNConfig.learning_starts must be an integer >= 0, got {self.learning_starts!r}.")
        for name in ("gamma", "tau", "start_e", "end_e", "exploration_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DQNConfig.{name} must be in [0, 1], got {value!r}.")
        if self.tau == 0.0:
            raise ValueError("DQNConfig.tau=0.0 never updates the target network; use 1.0 (hard copy) or e.g. 0.005.")
        for name in ("lr", "max_grad_norm", "huber_delta"):
            if not getattr(self, name) > 0:
                default = getattr(DQNConfig, name)
                raise ValueError(
                    f"DQNConfig.{name} must be > 0, got {getattr(self, name)!r}; the default is {default}."
                )
        if self.total_timesteps >= 2**31:
            raise ValueError(
                f"DQNConfig.total_timesteps={self.total_timesteps} must be below 2**31: the state counts env steps "
                "in int32 (the warm-up and epsilon schedule read that count); split the run or lower it."
            )
        if self.steps_per_update > self.total_timesteps:
            raise ValueError(
                f"DQNConfig.total_timesteps={self.total_timesteps} is less than one train_step "
                f"(num_envs * train_frequency = {self.steps_per_update}); raise it or step fewer envs."
            )
        if self.learning_starts >= self.total_timesteps:
            raise ValueError(
                f"DQNConfig.learning_starts={self.learning_starts} is not below total_timesteps="
                f"{self.total_timesteps}: the run would never learn; lower it (1000 is typical)."
            )
        if self.steps_per_update > self.buffer_size:
            raise ValueError(
                f"DQNConfig.buffer_size={self.buffer_size} is smaller than one train_step's transitions "
                f"(num_envs * train_frequency = {self.steps_per_update}); raise it."
            )
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"DQNConfig.batch_size={self.batch_size} is larger than buffer_size={self.buffer_size}; "
                "lower batch_size or raise buffer_size."
            )

    @property
    def steps_per_update(self) -> int:
        """Env steps of one train_step (all envs): ``num_envs * train_frequency``."""
        return self.num_envs * self.train_frequency

    @property
    def num_updates(self) -> int:
        """train_step calls of the run: ``total_timesteps // steps_per_update``."""
        return self.total_timesteps // self.steps_per_update

    @property
    def exploration_steps(self) -> int:
        """Env steps over which epsilon decays: ``exploration_fraction * total_timesteps``."""
        return int(self.exploration_fraction * self.total_timesteps)

    @property
    def num_gradient_steps(self) -> int:
        """Gradient steps of the run (for the lr schedule): train_steps after warm-up × gradient_steps."""
        # A train_step learns when its env_steps count (after collecting) reaches learning_starts.
        first = max(-(-self.learning_starts // self.steps_per_update), 1)
        return max(self.num_updates - first + 1, 0) * self.gradient_steps
