"""Implicit Q-learning (Kostrikov, Nair, Levine 2021): the static record ``IQL`` and pure functions.

    data, stats = bc.data.load(config.data, env, env_params, env_id=..., owner="IQL", transitions=True)
    iql = IQL.make(config, env, env_params, env_id="Pendulum-v1", data=data, norm_stats=stats)
    state, metrics = iql.train_step(iql.init(key))

One ``train_step`` is one batch and one gradient step of three losses (paper eqs. 5, 6, 7), with
stop-gradients so one backward pass gives the three separate gradients, all from the parameters
before the step (as SAC here):

- value: the expectile loss ``L_2^tau(min_i Q_target_i(s, a) - V(s))``, ``|tau - 1(u < 0)| u^2``;
- critics: ``(r + gamma (1 - terminated) V(s') - Q_i(s, a))^2`` for both critics;
- actor: advantage-weighted regression ``-exp(beta (min_i Q_target_i(s, a) - V(s))) log pi(a|s)``,
  weights clipped at ``max_weight``;

then a Polyak step of the target critics. ``IQL.make`` picks the networks once from the action space:

- bounded 1-D Box: critics ``Q(s, a)`` of the concatenated state and action (``TwinCritic``); the actor a
  Gaussian with a tanh-squashed mean scaled onto the action bounds and a state-independent log-std (the
  paper's); ``act`` returns its mean when greedy, else a sample clipped to the bounds;
- Discrete(n): critics ``Q(s, .)`` with one output per action (two DQN ``QNetwork``s), read at the recorded
  action; the actor a categorical policy (logits); ``act`` returns the argmax when greedy, else a sample.

The losses see the networks only through ``critic(obs, action) -> [2, b]`` and the actor's ``log_prob``,
``mode`` and ``sample``, so they are the same code for both. Observations are z-scored with the dataset's
NormStats under ``--data.normalize`` (in ``params``); actions never are.
"""

import dataclasses
from typing import Any, ClassVar, cast

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vibe.algorithms import algorithm, metrics
from vibe.algorithms.bc.data import Normalizer, OfflineAlgorithm, OfflineFrames
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.metrics import Metrics
from vibe.core import typing as at
from vibe.data import normalize
from vibe.envs import spaces
from vibe.envs.env import Env
from vibe.networks import heads
from vibe.networks.encoder import Encoder
from vibe.networks.heads import TORCH_DEFAULT_INIT
from vibe.networks.models import QNetwork, TwinCritic, twin


class ValueNetwork(nn.Module):
    """``obs -> V(obs)``."""

    encoder: Any

    @nn.compact
    def __call__(self, obs: at.Array) -> at.Array:
        features = Encoder(self.encoder, 1, TORCH_DEFAULT_INIT)(obs)
        return jnp.squeeze(nn.Dense(1, kernel_init=TORCH_DEFAULT_INIT)(features), -1)


class GaussianActor(nn.Module):
    """``obs -> (mean, log_std)``: mean = the tanh of a dense layer scaled onto ``[low, high]``.

    ``log_prob``, ``mode`` and ``sample`` read that output and use no parameters (call them unbound)."""

    encoder: Any
    low: Any
    high: Any
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, obs: at.Array) -> tuple[at.Array, at.Array]:
        features = Encoder(self.encoder, 1, TORCH_DEFAULT_INIT)(obs)
        dim = len(self.low)
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        u = nn.Dense(dim, kernel_init=TORCH_DEFAULT_INIT)(features)
        mean = (high + low) / 2 + (high - low) / 2 * jnp.tanh(u)
        log_std = self.param("log_std", nn.initializers.zeros, (dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)

    def log_prob(self, out: tuple[at.Array, at.Array], action: at.Array) -> at.Float[at.Array, " b"]:
        mean, log_std = out
        return (-0.5 * ((action - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)

    def mode(self, out: tuple[at.Array, at.Array]) -> at.Array:
        return out[0]

    def sample(self, out: tuple[at.Array, at.Array], key: at.Key) -> at.Array:
        """A Gaussian sample clipped to the bounds."""
        mean, log_std = out
        sample = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return jnp.clip(sample, jnp.asarray(self.low), jnp.asarray(self.high))


class CategoricalActor(nn.Module):
    """``obs -> logits [..., n]``: a torso and a ``Categorical`` head (near-uniform at start). ``log_prob``,
    ``mode`` and ``sample`` as ``GaussianActor``'s, for integer actions."""

    encoder: Any
    num_actions: int

    @nn.compact
    def __call__(self, obs: at.Array) -> at.Array:
        return heads.Categorical(self.num_actions)(Encoder(self.encoder, 1, TORCH_DEFAULT_INIT)(obs))

    def log_prob(self, logits: at.Array, action: at.Array) -> at.Float[at.Array, " b"]:
        return jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]

    def mode(self, logits: at.Array) -> at.Array:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sample(self, logits: at.Array, key: at.Key) -> at.Array:
        return jax.random.categorical(key, logits).astype(jnp.int32)


class DiscreteTwinCritic(nn.Module):
    """Two independent ``QNetwork``s (DQN's), one Q value per action, stacked as ``TwinCritic`` stacks its
    MLPs: ``q_values(obs) -> [2, ..., n]``; called with the actions, ``(obs, action int) -> [2, ...]``."""

    encoder: Any
    num_actions: int

    def setup(self) -> None:
        self.twin = twin(QNetwork)(self.encoder, self.num_actions)

    def q_values(self, obs: at.Array) -> at.Float[at.Array, "2 ... n"]:
        return self.twin(obs)

    def __call__(self, obs: at.Array, action: at.Array) -> at.Float[at.Array, "2 ..."]:
        q = self.q_values(obs)
        index = jnp.broadcast_to(action.astype(jnp.int32)[None, ..., None], (*q.shape[:-1], 1))
        return jnp.take_along_axis(q, index, axis=-1)[..., 0]


@flax.struct.dataclass
class IQLParams:
    """What Adam trains (actor, critic, value) and the dataset's fixed normalisation."""

    actor: Any
    critic: Any
    value: Any
    normalizer: Normalizer


@flax.struct.dataclass
class IQLState:
    """Everything a run needs to continue bit-for-bit.

    Attributes:
        params: ``IQLParams``.
        target_critic: Polyak-averaged copy of ``params.critic``.
        opt_state: Adam state of the trained parts of ``params``.
        key: raw ``uint32[2]`` PRNG key of the next batch.
        step: int32 ``train_step`` calls done.
    """

    params: IQLParams
    target_critic: Any
    opt_state: Any
    key: at.Key
    step: at.Int[at.Array, ""]


def trained(params: IQLParams) -> tuple[Any, Any, Any]:
    return params.actor, params.critic, params.value


@dataclasses.dataclass(frozen=True)
class IQL(OfflineAlgorithm):
    """IQL's static record, built once by ``IQL.make``."""

    name: ClassVar[str] = "iql"
    actor: GaussianActor | CategoricalActor  # chosen by ``make`` from the action space, as ``critic``
    critic: TwinCritic | DiscreteTwinCritic
    value: ValueNetwork
    optimizer: optax.GradientTransformation

    @classmethod
    def make(
        cls,
        config: IQLConfig,
        env: Env,
        env_params: Any,
        *,
        env_id: str = "the env",
        data: dict[str, Any] | OfflineFrames | None = None,
        norm_stats: dict[str, normalize.NormStats] | None = None,
    ) -> "IQL":
        """``data`` from ``bc.data.load(..., transitions=True)``; None builds a record that only acts."""
        actor, critic = networks(config, env.action_space(env_params), env_id)
        obs_space = env.observation_space(env_params)
        if config.encoder.kind != "mlp" or len(obs_space.shape) != 1:
            raise ValueError(f"IQL reads flat observations through an mlp encoder; {env_id} observes {obs_space!r}")
        if config.data.action_horizon != 1:
            raise ValueError(
                f"IQL learns one action per state; pass --data.action-horizon 1 (got {config.data.action_horizon})"
            )
        if data is not None and not (data.transitions if isinstance(data, OfflineFrames) else "next_obs" in data):
            raise ValueError("IQL needs transitions: load the dataset with bc.data.load(..., transitions=True)")
        stats = norm_stats if config.data.normalize else None
        if stats is not None:
            # Actions stay in env units: the actor's mean is bounded there (discrete ones are classes).
            stats = {k: v for k, v in stats.items() if k == "obs"}
        value = ValueNetwork(config.encoder)
        return cls(config, env, env_params, data, stats, actor, critic, value, optax.adam(config.lr))

    def init(self, key: at.Key) -> IQLState:
        key, actor_key, critic_key, value_key = jax.random.split(key, 4)
        obs_space, space = self.env.observation_space(self.env_params), self.env.action_space(self.env_params)
        obs, action = jnp.zeros(obs_space.shape, jnp.float32), jnp.zeros(space.shape, space.dtype)
        normalizer = Normalizer.make(tuple(obs_space.shape), tuple(space.shape), self.norm_stats)
        params = IQLParams(
            self.actor.init(actor_key, obs),
            self.critic.init(critic_key, obs, action),
            self.value.init(value_key, obs),
            normalizer,
        )
        target_critic = jax.tree.map(jnp.copy, params.critic)  # its own buffers: the runner donates the state
        return IQLState(params, target_critic, self.optimizer.init(trained(params)), key, algorithm.counter())

    def update(self, state: IQLState, batch: dict[str, at.Array]) -> tuple[IQLState, Metrics]:
        """One gradient step of the three losses on ``batch``, one Polyak step. Metrics: ``loss/value``,
        ``loss/q``, ``loss/actor``, ``q/mean``, ``v/mean``, ``adv/mean``, ``weight/mean``."""
        grads, info = jax.grad(iql_losses, argnums=1, has_aux=True)(
            self, trained(state.params), state.params.normalizer, state.target_critic, batch
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, trained(state.params))
        actor, critic, value = optax.apply_updates(trained(state.params), updates)
        params = dataclasses.replace(state.params, actor=actor, critic=critic, value=value)
        target_critic = optax.incremental_update(critic, state.target_critic, self.config.tau)
        state = dataclasses.replace(
            state, params=params, target_critic=target_critic, opt_state=opt_state, step=state.step + 1
        )
        return state, metrics.without_episodes(info)

    def act(self, params: IQLParams, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        """The actor's mode when ``greedy`` (the Gaussian's mean, the logits' argmax), else a sample (a
        Gaussian one clipped to the bounds, a categorical one)."""
        out: Any = self.actor.apply(params.actor, params.normalizer.obs(obs))
        return self.actor.mode(out) if greedy else self.actor.sample(out, key)


def networks(
    config: IQLConfig, space: spaces.Space, env_id: str
) -> tuple[GaussianActor, TwinCritic] | tuple[CategoricalActor, DiscreteTwinCritic]:
    """The actor and critics of ``space`` (the module docstring); anything but Discrete or a bounded 1-D Box
    raises."""
    enc = config.encoder
    if isinstance(space, spaces.Discrete):
        return CategoricalActor(enc, space.n), DiscreteTwinCritic(enc, space.n)
    if isinstance(space, spaces.Box) and len(space.shape) == 1 and space.bounded.all():
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        bounds = tuple(low.tolist()), tuple(high.tolist())
        return GaussianActor(enc, *bounds, config.log_std_min, config.log_std_max), TwinCritic(enc)
    raise ValueError(f"IQL needs Discrete or bounded 1-D Box actions; {env_id} has {space!r}")


def critic_values(static: IQL, critic: Any, obs: at.Array, action: at.Array) -> at.Float[at.Array, "2 b"]:
    """Both critics' Q(obs, action), stacked on a leading axis of 2 (discrete: the recorded actions' entries)."""
    return cast(at.Array, static.critic.apply(critic, obs, action))


def state_value(static: IQL, value: Any, obs: at.Array) -> at.Float[at.Array, " b"]:
    return cast(at.Array, static.value.apply(value, obs))


def expectile_loss(diff: at.Array, expectile: float) -> at.Array:
    """``|tau - 1(diff < 0)| diff^2`` (paper eq. 5's L_2^tau), elementwise."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff**2


def iql_losses(
    static: IQL, nets: tuple[Any, Any, Any], normalizer: Normalizer, target_critic: Any, batch: dict[str, at.Array]
) -> tuple[at.Array, dict[str, at.Array]]:
    """Value + critic + actor loss of one batch (module docstring); gradients reach each network from its
    own loss only."""
    config = static.config
    actor, critic, value = nets
    frozen_value = jax.lax.stop_gradient(value)
    obs, next_obs = normalizer.obs(batch["obs"]), normalizer.obs(batch["next_obs"])
    action = batch["action"][:, 0]  # horizon 1: [b, act] floats or [b] int32

    target_q = jnp.min(critic_values(static, target_critic, obs, action), axis=0)  # [b], no gradient (target)
    v = state_value(static, value, obs)
    value_loss = expectile_loss(target_q - v, config.expectile).mean()

    next_v = state_value(static, frozen_value, next_obs)
    target = batch["reward"] + config.gamma * (1.0 - batch["terminated"].astype(jnp.float32)) * next_v
    q = critic_values(static, critic, obs, action)  # [2, b]
    q_loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(axis=1).sum()

    advantage = jax.lax.stop_gradient(target_q - v)  # V before this step, as the critics' target uses
    weight = jnp.minimum(jnp.exp(config.temperature * advantage), config.max_weight)
    log_prob = static.actor.log_prob(cast(Any, static.actor.apply(actor, obs)), action)
    actor_loss = -(weight * log_prob).mean()

    info = {
        "loss/value": value_loss,
        "loss/q": q_loss,
        "loss/actor": actor_loss,
        "q/mean": jax.lax.stop_gradient(q).mean(),
        "v/mean": jax.lax.stop_gradient(v).mean(),
        "adv/mean": advantage.mean(),
        "weight/mean": weight.mean(),
    }
    return value_loss + q_loss + actor_loss, info
