"""SAC for continuous actions: the static record ``SAC`` and pure functions over ``SACState``.

One ``train_step`` = one env step of each of the ``num_envs`` envs (uniformly
random actions in the bounds until ``learning_starts`` env steps, policy
samples after), the transitions added to the on-device flashbax buffer, then
``gradient_steps = utd_ratio * num_envs`` gradient steps scanned in place:

- warm-up is a ``lax.cond`` on a traced counter, so the same function runs every step;
- all ``gradient_steps`` batches are drawn in one buffer sample and reshaped;
- one gradient step is one ``jax.grad`` of the critic, actor and temperature
  losses together (stop-gradients keep them apart) and one Adam update of all
  three, then a Polyak step of the target critics.

The policy is a tanh-squashed Gaussian scaled onto the env's ``Box`` bounds
(``vibe.networks.heads.TanhGaussian``: Pendulum's torque is ±2, not ±1).
"""

import dataclasses
from typing import Any, ClassVar, cast

import flashbax as fbx
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vibe.algorithms import algorithm, metrics
from vibe.algorithms.metrics import Metrics
from vibe.algorithms.sac import losses
from vibe.algorithms.sac.config import SACConfig
from vibe.core import typing as at
from vibe.envs import spaces
from vibe.envs.env import Env
from vibe.networks import heads
from vibe.networks.models import Actor, TwinCritic

# Metrics of the gradient steps; during warm-up "alpha" is the initial alpha and the others are 0.
LOSS_METRICS = ("loss/q", "loss/actor", "loss/alpha", "alpha", "q/mean", "entropy")
# The gradient-step carry: (params, target_critic, opt_state).
Carry = tuple["SACParams", Any, Any]


@flax.struct.dataclass
class SACParams:
    """What Adam trains: the actor, the twin critics and log(alpha) (a float32 scalar)."""

    actor: Any
    critic: Any
    log_alpha: at.Float[at.Array, ""]


@flax.struct.dataclass
class ReplayItem:
    """One stored transition (the buffer adds a leading axis to each field).

    ``next_obs`` is the true next observation (``info["final_obs"]``), and only
    ``terminated`` is kept: a truncated transition bootstraps like any other.
    """

    obs: at.Float[at.Array, " obs"]
    action: at.Float[at.Array, " act"]
    reward: at.Float[at.Array, ""]
    terminated: at.Bool[at.Array, ""]
    next_obs: at.Float[at.Array, " obs"]


@flax.struct.dataclass
class SACState:
    """Everything a run needs to continue bit-for-bit; a pytree of arrays only.

    Attributes:
        params: trained parameters (``SACParams``).
        target_critic: Polyak-averaged copy of ``params.critic``.
        opt_state: optax Adam state of ``params``.
        buffer_state: flashbax replay buffer of ``ReplayItem``s.
        env_state: state of the ``n`` training envs (leading axis ``n``).
        obs: current observations ``[n, obs]``.
        key: raw ``uint32[2]`` PRNG key of the next step.
        step: int32 number of ``train_step`` calls done.
        env_steps: int32 env steps done (all envs).
    """

    params: SACParams
    target_critic: Any
    opt_state: Any
    buffer_state: Any
    env_state: Any
    obs: at.Float[at.Array, "n obs"]
    key: at.Key
    step: at.Int[at.Array, ""]
    env_steps: at.Int[at.Array, ""]


@dataclasses.dataclass(frozen=True)
class SAC(algorithm.OnlineAlgorithm[SACConfig]):
    """SAC's static record: everything fixed for a run, built once by ``SAC.make``."""

    name: ClassVar[str] = "sac"
    actor: Actor
    critic: TwinCritic
    head: heads.TanhGaussian
    target_entropy: float
    buffer: Any  # the flashbax buffer (pure functions init/add/sample)
    optimizer: optax.GradientTransformation

    @classmethod
    def make(cls, config: SACConfig, env: Env, env_params: Any, *, env_id: str = "the env") -> "SAC":
        space = env.action_space(env_params)
        if not isinstance(space, spaces.Box) or len(space.shape) != 1 or not space.bounded.all():
            raise ValueError(
                f"SAC needs a bounded 1-D Box action space (continuous actions); {env_id} has {space!r}. "
                "Use PPO or DQN for discrete actions, e.g. Pendulum-v1 or MountainCarContinuous-v0 for SAC."
            )
        obs_space = env.observation_space(env_params)
        if config.encoder.kind != "mlp" or len(obs_space.shape) != 1:
            raise ValueError(
                f"SAC reads flat observations through an mlp encoder; {env_id} observes {obs_space!r} and the "
                f"config asks for {config.encoder.kind}: pass --algo.encoder.kind mlp with a flat-observation env"
            )
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        head = heads.TanhGaussian(low, high, config.log_std_min, config.log_std_max)
        buffer = fbx.make_item_buffer(
            max_length=config.buffer_size,
            min_length=1,
            sample_batch_size=config.gradient_steps * config.batch_size,
            add_batches=True,
        )
        vec_env = algorithm.training_env(env, env_params, config.num_envs, owner="SAC")
        target_entropy = -config.target_entropy_scale * head.action_dim
        actor, critic = Actor(config.encoder, head), TwinCritic(config.encoder)
        return cls(config, env, env_params, vec_env, actor, critic, head, target_entropy, buffer, optax.adam(config.lr))

    def init(self, key: at.Key) -> SACState:
        """Initial parameters (target critics = critics), optimizer state, empty buffer, reset envs."""
        key, actor_key, critic_key, env_key = jax.random.split(key, 4)
        obs = jnp.zeros(self.env.observation_space(self.env_params).shape, jnp.float32)
        action = jnp.zeros(self.head.low.shape, jnp.float32)
        log_alpha = jnp.asarray(np.log(self.config.init_alpha), jnp.float32)
        params = SACParams(self.actor.init(actor_key, obs), self.critic.init(critic_key, obs, action), log_alpha)
        # A copy, not the same buffers: a runner donates the state, and XLA refuses to donate one buffer twice.
        target_critic = jax.tree.map(jnp.copy, params.critic)
        item = ReplayItem(obs, action, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.bool_), obs)
        env_state, timestep = self.vec_env.reset(env_key, self.env_params)
        return SACState(
            params=params,
            target_critic=target_critic,
            opt_state=self.optimizer.init(params),
            buffer_state=jax.tree.map(algorithm.strong, self.buffer.init(item)),
            env_state=env_state,
            obs=timestep.obs.astype(jnp.float32),
            key=key,
            step=algorithm.counter(),
            env_steps=algorithm.counter(),
        )

    def train_step(self, state: SACState) -> tuple[SACState, Metrics]:
        """One env step per env, then ``gradient_steps`` updates once ``learning_starts`` env steps are stored.

        Metrics: ``loss/q``, ``loss/actor``, ``loss/alpha``, ``alpha``, ``q/mean``, ``entropy`` (means
        over this step's gradient steps; 0 during warm-up, except ``alpha``), and the completed episodes.
        """
        config = self.config
        key, collect_key, sample_key, update_key = jax.random.split(state.key, 4)
        state, episodes = collect(self, state, collect_key)

        def learn(carry: Carry) -> tuple[Carry, dict[str, at.Array]]:
            sample = self.buffer.sample(state.buffer_state, sample_key).experience
            shape = (config.gradient_steps, config.batch_size)
            batches = jax.tree.map(lambda x: x.reshape((*shape, *x.shape[1:])), sample)
            keys = jax.random.split(update_key, config.gradient_steps)
            carry, loss_metrics = jax.lax.scan(lambda c, xs: update(self, c, *xs), carry, (batches, keys))
            return carry, {name: value.mean() for name, value in loss_metrics.items()}

        def wait(carry: Carry) -> tuple[Carry, dict[str, at.Array]]:
            loss_metrics = {name: jnp.zeros((), jnp.float32) for name in LOSS_METRICS}
            return carry, {**loss_metrics, "alpha": jnp.exp(carry[0].log_alpha)}

        # cond, not a masked update: on CPU only the taken branch runs, so warm-up steps cost an env step each.
        carry = (state.params, state.target_critic, state.opt_state)
        (params, target_critic, opt_state), loss_metrics = jax.lax.cond(
            state.env_steps >= config.learning_starts, learn, wait, carry
        )
        state = dataclasses.replace(
            state, params=params, target_critic=target_critic, opt_state=opt_state, key=key, step=state.step + 1
        )
        return state, metrics.from_episodes(loss_metrics, episodes)

    def act(self, params: SACParams, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        """The scaled tanh of the Gaussian's mean when ``greedy``, else a policy sample; always in bounds."""
        output = actor_output(self, params.actor, obs)
        if greedy:
            return self.head.mode(output)
        return self.head.sample_and_log_prob(output, key)[0]


def actor_output(static: SAC, actor_params: Any, obs: at.Array) -> tuple[at.Array, at.Array]:
    """``(mean, log_std)`` of the pre-tanh Gaussian."""
    return cast(tuple[at.Array, at.Array], static.actor.apply(actor_params, obs))


def critic_values(static: SAC, critic_params: Any, obs: at.Array, action: at.Array) -> at.Float[at.Array, "2 b"]:
    """Both critics' Q(obs, action), stacked on a leading axis of 2."""
    return cast(at.Array, static.critic.apply(critic_params, obs, action))


def sac_losses(
    static: SAC, params: SACParams, target_critic: Any, batch: ReplayItem, key: at.Key
) -> tuple[at.Float[at.Array, ""], dict[str, at.Array]]:
    """Critic + actor + temperature loss of one batch (each field ``[b, ...]``).

    Stop-gradients make the sum's gradient the three separate gradients: the
    critic loss reaches only ``params.critic`` (the target uses the target
    critics and a next action from the frozen actor), the actor loss only
    ``params.actor`` (through the reparameterised action into frozen critics),
    the temperature loss only ``params.log_alpha``. All three see the
    parameters from before this step, so the step is one backward pass.
    """
    next_key, pi_key = jax.random.split(key)
    frozen = jax.lax.stop_gradient(params)
    alpha = jnp.exp(frozen.log_alpha)

    next_action, next_log_prob = static.head.sample_and_log_prob(
        actor_output(static, frozen.actor, batch.next_obs), next_key
    )
    next_q = critic_values(static, target_critic, batch.next_obs, next_action)
    target = losses.td_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, static.config.gamma)
    q = critic_values(static, params.critic, batch.obs, batch.action)
    q_loss = losses.critic_loss(q, target)

    action, log_prob = static.head.sample_and_log_prob(actor_output(static, params.actor, batch.obs), pi_key)
    q_pi = critic_values(static, frozen.critic, batch.obs, action)
    pi_loss = losses.actor_loss(q_pi, log_prob, alpha)
    a_loss = losses.alpha_loss(params.log_alpha, log_prob, static.target_entropy)

    loss_metrics = {
        "loss/q": q_loss,
        "loss/actor": pi_loss,
        "loss/alpha": a_loss,
        "alpha": alpha,
        "q/mean": jax.lax.stop_gradient(q).mean(),
        "entropy": -jax.lax.stop_gradient(log_prob).mean(),
    }
    return q_loss + pi_loss + a_loss, loss_metrics


def update(static: SAC, carry: Carry, batch: ReplayItem, key: at.Key) -> tuple[Carry, dict[str, at.Array]]:
    """One gradient step and Polyak update: ``(params, target_critic, opt_state) -> same``."""
    params, target_critic, opt_state = carry
    grads, loss_metrics = jax.grad(sac_losses, argnums=1, has_aux=True)(static, params, target_critic, batch, key)
    updates, opt_state = static.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    target_critic = optax.incremental_update(params.critic, target_critic, static.config.tau)
    return (params, target_critic, opt_state), loss_metrics


def collect(static: SAC, state: SACState, key: at.Key) -> tuple[SACState, dict[str, at.Array]]:
    """Steps every env once and adds the ``n`` transitions to the buffer.

    Actions are uniform in ``[low, high]`` while ``env_steps < learning_starts``,
    policy samples after (both are computed; a select picks one).

    Returns:
        ``(state, episodes)``: advanced envs, obs, buffer and ``env_steps``; ``[n]``
        arrays ``episode_return``, ``episode_length``, ``done`` from ``EpisodeStats``.
    """
    config, head = static.config, static.head
    random_key, policy_key, env_key = jax.random.split(key, 3)
    shape = (config.num_envs, *head.low.shape)
    random_action = jax.random.uniform(random_key, shape, jnp.float32, head.low, head.high)
    policy_action = static.act(state.params, state.obs, policy_key, greedy=False)
    action = jnp.where(state.env_steps < config.learning_starts, random_action, policy_action)
    env_state, timestep = static.vec_env.step(env_key, state.env_state, action, static.env_params)
    info = timestep.info
    item = ReplayItem(state.obs, action, timestep.reward, timestep.terminated, info["final_obs"].astype(jnp.float32))
    state = dataclasses.replace(
        state,
        buffer_state=static.buffer.add(state.buffer_state, item),
        env_state=env_state,
        obs=timestep.obs.astype(jnp.float32),
        env_steps=state.env_steps + config.num_envs,
    )
    return state, {k: info[k] for k in ("episode_return", "episode_length", "done")}
