"""SAC for continuous actions as pure functions over an explicit ``SACState``.

One ``train_step`` = one env step of each of the ``num_envs`` envs (uniformly
random actions in the bounds until ``learning_starts`` env steps, policy
samples after), the transitions added to the on-device flashbax buffer, then
``gradient_steps = utd_ratio * num_envs`` gradient steps scanned in place.
Built so a runner can loop ``make_train_step(...)`` inside one jitted, donated
function:

- warm-up is a ``lax.cond`` on a traced counter, so the same function runs every step;
- all ``gradient_steps`` batches are drawn in one buffer sample and reshaped;
- one gradient step is one ``jax.grad`` of the critic, actor and temperature
  losses together (stop-gradients keep them apart) and one Adam update of all
  three, then a Polyak step of the target critics.

The env must be wrapped with ``vibe.envs.wrappers.for_training`` (auto-reset
with ``info["final_obs"]`` and episode statistics).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flashbax as fbx
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vibe.algorithms.sac import losses, networks
from vibe.algorithms.sac.config import SACConfig
from vibe.core import typing as at
from vibe.envs import spaces
from vibe.envs.env import Env

Metrics = dict[str, at.Array]
# Metrics of the gradient steps; during warm-up "alpha" is the initial alpha and the others are 0.
LOSS_METRICS = ("loss/q", "loss/actor", "loss/alpha", "alpha", "q/mean", "entropy")


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
class Static:
    """The static parts a step needs besides the config: modules, bounds, buffer, optimizer."""

    actor: networks.Actor
    critic: networks.TwinCritic
    low: np.ndarray  # action lower bounds [act]
    high: np.ndarray  # action upper bounds [act]
    target_entropy: float
    buffer: Any  # the flashbax buffer (pure functions init/add/sample)
    optimizer: optax.GradientTransformation


def make_static(config: SACConfig, env: Env, env_params: Any) -> Static:
    """Networks, bounds, buffer and optimizer for ``env``'s bounded ``Box`` action space.

    Args:
        env: a single env wrapped with ``wrappers.for_training`` (checked here).
    """
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Box) or len(space.shape) != 1 or not space.bounded.all():
        raise ValueError(
            f"SAC needs a bounded 1-D Box action space (continuous actions); the env has {space!r}. "
            "Use PPO or DQN for discrete actions, e.g. Pendulum-v1 or MountainCarContinuous-v0 for SAC."
        )
    _, timestep = jax.eval_shape(env.reset, jax.random.PRNGKey(0), env_params)  # traces, computes nothing
    missing = {"final_obs", "episode_return", "episode_length", "done"} - set(timestep.info)
    if missing:
        raise ValueError(f"SAC's env lacks info keys {sorted(missing)}; wrap it: vibe.envs.wrappers.for_training(env).")
    action_dim = space.shape[0]
    actor = networks.Actor(action_dim, config.hidden_sizes, config.activation, config.log_std_min, config.log_std_max)
    critic = networks.TwinCritic(config.hidden_sizes, config.activation)
    buffer = fbx.make_item_buffer(
        max_length=config.buffer_size,
        min_length=1,
        sample_batch_size=config.gradient_steps * config.batch_size,
        add_batches=True,
    )
    low, high = space.low.astype(np.float32), space.high.astype(np.float32)
    target_entropy = -config.target_entropy_scale * action_dim
    return Static(actor, critic, low, high, target_entropy, buffer, optax.adam(config.lr))


def _strong(x: at.Array) -> at.Array:
    # flashbax starts its write index as a weak-typed jnp.array(0); a weak-typed leaf
    # in a jitted, looped train state recompiles once it comes back strong (e.g. restored).
    return jnp.asarray(x, dtype=x.dtype)


def init(config: SACConfig, static: Static, env: Env, env_params: Any, key: at.Key) -> SACState:
    """Initial parameters (target critics = critics), optimizer state, empty buffer, reset envs.

    Args:
        env: the env ``static`` was made for (wrapped with ``wrappers.for_training``).
        key: raw PRNG key (the runner's seed).
    """
    key, actor_key, critic_key, env_key = jax.random.split(key, 4)
    obs_space = env.observation_space(env_params)
    obs = jnp.zeros(obs_space.shape, jnp.float32)
    action = jnp.zeros(static.low.shape, jnp.float32)
    log_alpha = jnp.asarray(np.log(config.init_alpha), jnp.float32)
    params = SACParams(static.actor.init(actor_key, obs), static.critic.init(critic_key, obs, action), log_alpha)
    # A copy, not the same buffers: a runner donates the state, and XLA refuses to donate one buffer twice.
    target_critic = jax.tree.map(jnp.copy, params.critic)
    item = ReplayItem(obs, action, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.bool_), obs)
    env_state, timestep = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(env_key, config.num_envs), env_params)
    return SACState(
        params=params,
        target_critic=target_critic,
        opt_state=static.optimizer.init(params),
        buffer_state=jax.tree.map(_strong, static.buffer.init(item)),
        env_state=env_state,
        obs=timestep.obs.astype(jnp.float32),
        key=key,
        step=jnp.zeros((), jnp.int32),
        env_steps=jnp.zeros((), jnp.int32),
    )


def sac_losses(
    config: SACConfig, static: Static, params: SACParams, target_critic: Any, batch: ReplayItem, key: at.Key
) -> tuple[at.Float[at.Array, ""], Metrics]:
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

    next_action, next_log_prob = networks.sample_action(
        static.actor, frozen.actor, batch.next_obs, next_key, static.low, static.high
    )
    next_q = networks.critic_values(static.critic, target_critic, batch.next_obs, next_action)
    target = losses.td_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, config.gamma)
    q = networks.critic_values(static.critic, params.critic, batch.obs, batch.action)
    q_loss = losses.critic_loss(q, target)

    action, log_prob = networks.sample_action(static.actor, params.actor, batch.obs, pi_key, static.low, static.high)
    q_pi = networks.critic_values(static.critic, frozen.critic, batch.obs, action)
    pi_loss = losses.actor_loss(q_pi, log_prob, alpha)
    a_loss = losses.alpha_loss(params.log_alpha, log_prob, static.target_entropy)

    metrics = {
        "loss/q": q_loss,
        "loss/actor": pi_loss,
        "loss/alpha": a_loss,
        "alpha": alpha,
        "q/mean": jax.lax.stop_gradient(q).mean(),
        "entropy": -jax.lax.stop_gradient(log_prob).mean(),
    }
    return q_loss + pi_loss + a_loss, metrics


def update(
    config: SACConfig, static: Static, carry: tuple[SACParams, Any, Any], batch: ReplayItem, key: at.Key
) -> tuple[tuple[SACParams, Any, Any], Metrics]:
    """One gradient step and Polyak update: ``(params, target_critic, opt_state) -> same``."""
    params, target_critic, opt_state = carry
    grads, metrics = jax.grad(sac_losses, argnums=2, has_aux=True)(config, static, params, target_critic, batch, key)
    updates, opt_state = static.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    target_critic = optax.incremental_update(params.critic, target_critic, config.tau)
    return (params, target_critic, opt_state), metrics


def collect(
    config: SACConfig, static: Static, env: Env, env_params: Any, state: SACState, key: at.Key
) -> tuple[SACState, dict[str, at.Array]]:
    """Steps every env once and adds the ``n`` transitions to the buffer.

    Actions are uniform in ``[low, high]`` while ``env_steps < learning_starts``,
    policy samples after (both are computed; a select picks one).

    Returns:
        ``(state, episodes)``: advanced envs, obs, buffer and ``env_steps``; ``[n]``
        arrays ``episode_return``, ``episode_length``, ``done`` from ``EpisodeStats``.
    """
    random_key, policy_key, env_key = jax.random.split(key, 3)
    shape = (config.num_envs, *static.low.shape)
    random_action = jax.random.uniform(random_key, shape, jnp.float32, static.low, static.high)
    policy_action, _ = networks.sample_action(
        static.actor, state.params.actor, state.obs, policy_key, static.low, static.high
    )
    action = jnp.where(state.env_steps < config.learning_starts, random_action, policy_action)
    env_keys = jax.random.split(env_key, config.num_envs)
    env_state, timestep = jax.vmap(env.step, in_axes=(0, 0, 0, None))(env_keys, state.env_state, action, env_params)
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


def train_step(
    config: SACConfig, static: Static, env: Env, env_params: Any, state: SACState
) -> tuple[SACState, Metrics]:
    """One env step per env, then ``gradient_steps`` updates once ``learning_starts`` env steps are stored.

    Returns:
        ``(state, metrics)``; float32 scalars: ``loss/q``, ``loss/actor``,
        ``loss/alpha``, ``alpha``, ``q/mean``, ``entropy`` (means over this
        step's gradient steps; 0 during warm-up, except ``alpha``), and over the episodes
        completed in this step ``episode/return_sum``, ``episode/length_sum``,
        ``episode/count``.
    """
    key, collect_key, sample_key, update_key = jax.random.split(state.key, 4)
    state, episodes = collect(config, static, env, env_params, state, collect_key)

    def learn(carry: tuple[SACParams, Any, Any]) -> tuple[tuple[SACParams, Any, Any], Metrics]:
        sample = static.buffer.sample(state.buffer_state, sample_key).experience
        batches = jax.tree.map(lambda x: x.reshape((config.gradient_steps, config.batch_size, *x.shape[1:])), sample)
        keys = jax.random.split(update_key, config.gradient_steps)
        carry, metrics = jax.lax.scan(lambda c, xs: update(config, static, c, *xs), carry, (batches, keys))
        return carry, {name: value.mean() for name, value in metrics.items()}

    def wait(carry: tuple[SACParams, Any, Any]) -> tuple[tuple[SACParams, Any, Any], Metrics]:
        metrics = {name: jnp.zeros((), jnp.float32) for name in LOSS_METRICS}
        return carry, {**metrics, "alpha": jnp.exp(carry[0].log_alpha)}

    # cond, not a masked update: on CPU only the taken branch runs, so warm-up steps cost an env step each.
    carry = (state.params, state.target_critic, state.opt_state)
    (params, target_critic, opt_state), metrics = jax.lax.cond(
        state.env_steps >= config.learning_starts, learn, wait, carry
    )
    metrics["episode/return_sum"] = episodes["episode_return"].sum()
    metrics["episode/length_sum"] = episodes["episode_length"].sum().astype(jnp.float32)
    metrics["episode/count"] = episodes["done"].sum().astype(jnp.float32)
    state = dataclasses.replace(
        state, params=params, target_critic=target_critic, opt_state=opt_state, key=key, step=state.step + 1
    )
    return state, metrics


def make_train_step(
    config: SACConfig, env: Env, env_params: Any, static: Static | None = None
) -> Callable[[SACState], tuple[SACState, Metrics]]:
    """``train_step`` with the static parts bound: ``state -> (state, metrics)``."""
    static = static or make_static(config, env, env_params)

    def step(state: SACState) -> tuple[SACState, Metrics]:
        return train_step(config, static, env, env_params, state)

    return step
