"""Behaviour cloning: the static record ``BC`` and pure functions over ``BCState``.

    bc = BC.make(config, env, env_params, env_id="CartPole-v1", data=data, norm_stats=stats)  # data.load
    state = bc.init(key)
    state, metrics = bc.train_step(state)        # one batch of config.data.batch_size samples
    bc.act(state.params, obs, key, greedy=True)  # env actions

The network maps an observation o_t to an action chunk a_t .. a_{t+H-1} (``H = data.action_horizon``):

- discrete actions: logits ``[H, n]``, cross-entropy against the recorded actions;
- continuous actions: ``config.continuous_loss`` "mse" (the mean chunk, squared error in normalised units)
  or "gaussian" (the mean plus a learned state-independent log-std per step and dimension, negative
  log-likelihood).

Steps of the chunk past the episode's end (``action_is_pad``) are masked out of the loss. ``act`` returns
the chunk's first action (greedy: the mode/mean; else a sample): evaluation and ``Policy.infer`` step one
action per observation and re-plan every step (receding horizon), which needs no state between calls;
``action_chunk`` returns all H for a robot-side chunk broker. With ``--data.normalize`` the dataset's
NormStats z-score observations and continuous actions; they live in ``params.normalizer`` (never trained),
so the checkpoint's params carry the policy's input and output transforms.

``train_step`` samples its batch inside jit from ``self.data`` with the key in the state, so a resumed
run draws exactly the batches a straight one would.
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from vibe.algorithms import algorithm, metrics
from vibe.algorithms.bc.config import BCConfig
from vibe.algorithms.bc.data import Normalizer, OfflineAlgorithm, OfflineFrames
from vibe.algorithms.metrics import Metrics
from vibe.core import typing as at
from vibe.data import normalize
from vibe.envs import spaces
from vibe.envs.env import Env
from vibe.networks.encoder import Encoder, check_observation


class ChunkPolicy(nn.Module):
    """``obs [..., *obs] -> [..., H, out]``: an encoder torso and one linear layer per chunk (plus, for a
    Gaussian, a log-std ``[H, out]`` that does not depend on the observation)."""

    encoder: Any
    horizon: int
    out: int
    obs_ndim: int = 1
    log_std: bool = False

    @nn.compact
    def __call__(self, obs: at.Array) -> at.Array | tuple[at.Array, at.Array]:
        features = Encoder(self.encoder, self.obs_ndim)(obs)
        init = nn.initializers.orthogonal(0.01)
        flat = nn.Dense(self.horizon * self.out, kernel_init=init, bias_init=nn.initializers.zeros)(features)
        mean = flat.reshape((*flat.shape[:-1], self.horizon, self.out))
        if not self.log_std:
            return mean
        log_std = self.param("log_std", nn.initializers.zeros, (self.horizon, self.out))
        return mean, jnp.broadcast_to(log_std, mean.shape)


@flax.struct.dataclass
class BCParams:
    """The network's parameters, and the dataset's normalisation (kept fixed; see the module docstring)."""

    net: Any
    normalizer: Normalizer


@flax.struct.dataclass
class BCState:
    """Everything a run needs to continue bit-for-bit.

    Attributes:
        params: ``BCParams``.
        opt_state: optax state of ``params.net``.
        key: raw ``uint32[2]`` PRNG key of the next batch.
        step: int32 ``train_step`` calls done.
    """

    params: BCParams
    opt_state: Any
    key: at.Key
    step: at.Int[at.Array, ""]


@dataclasses.dataclass(frozen=True)
class BC(OfflineAlgorithm):
    """BC's static record, built once by ``BC.make``."""

    name: ClassVar[str] = "bc"
    network: ChunkPolicy
    discrete: bool
    action_shape: tuple[int, ...]
    optimizer: optax.GradientTransformation

    @classmethod
    def make(
        cls,
        config: BCConfig,
        env: Env,
        env_params: Any,
        *,
        env_id: str = "the env",
        data: dict[str, Any] | OfflineFrames | None = None,
        norm_stats: dict[str, normalize.NormStats] | None = None,
    ) -> "BC":
        """``data`` from ``vibe.algorithms.bc.data.load``; None builds a record that only acts (a policy)."""
        obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
        check_observation(config.encoder, obs_space, env_id)
        discrete = isinstance(action_space, spaces.Discrete)
        if not discrete and not (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1):
            raise ValueError(f"BC supports Discrete and 1-D Box actions; {env_id} has {action_space!r}")
        out = action_space.n if isinstance(action_space, spaces.Discrete) else action_space.shape[0]
        gaussian = not discrete and config.continuous_loss == "gaussian"
        network = ChunkPolicy(config.encoder, config.data.action_horizon, out, len(obs_space.shape), gaussian)
        optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))
        stats = norm_stats if config.data.normalize else None
        action_shape = () if discrete else tuple(action_space.shape)
        return cls(config, env, env_params, data, stats, network, discrete, action_shape, optimizer)

    def init(self, key: at.Key) -> BCState:
        key, net_key = jax.random.split(key)
        obs_space = self.env.observation_space(self.env_params)
        net = self.network.init(net_key, algorithm.example_obs(obs_space))
        stats = self.norm_stats
        if stats is not None and self.discrete:
            stats = {
                k: v for k, v in stats.items() if k == "obs"
            }  # discrete actions are classes, not numbers to normalise
        if len(obs_space.shape) == 3 and stats is not None:
            stats = {k: v for k, v in stats.items() if k != "obs"}  # images go through the encoder's own scaling
        normalizer = Normalizer.make(tuple(obs_space.shape), self.action_shape, stats)
        params = BCParams(net, normalizer)
        return BCState(params, self.optimizer.init(net), key, algorithm.counter())

    def update(self, state: BCState, batch: dict[str, at.Array]) -> tuple[BCState, Metrics]:
        """One Adam step on ``batch``. Metrics: ``loss/bc``, ``bc/accuracy`` (discrete: greedy first action
        equals the recorded one) or ``bc/mse`` (continuous, first action, env units)."""
        grads, info = jax.grad(bc_loss, argnums=1, has_aux=True)(self, state.params.net, state.params, batch)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params.net)
        params = dataclasses.replace(state.params, net=optax.apply_updates(state.params.net, updates))
        state = dataclasses.replace(state, params=params, opt_state=opt_state, step=state.step + 1)
        return state, metrics.without_episodes(info)

    def action_chunk(self, params: BCParams, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        """Env actions ``[b, H, *act]`` for raw observations ``[b, *obs]``."""
        out: Any = self.network.apply(params.net, params.normalizer.obs(obs) if obs.dtype != jnp.uint8 else obs)
        if self.discrete:
            if greedy:
                return jnp.argmax(out, -1).astype(jnp.int32)
            return jax.random.categorical(key, out).astype(jnp.int32)
        mean, log_std = out if isinstance(out, tuple) else (out, None)
        action = mean
        if not greedy and log_std is not None:
            action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return params.normalizer.unaction(action)

    def act(self, params: BCParams, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        """The chunk's first action ``[b, *act]`` (see the module docstring for why)."""
        return self.action_chunk(params, obs, key, greedy=greedy)[:, 0]


def bc_loss(static: BC, net: Any, params: BCParams, batch: dict[str, at.Array]) -> tuple[at.Array, dict[str, Any]]:
    """Mean over the batch's unpadded chunk steps of the per-step loss (module docstring)."""
    normalizer = params.normalizer
    obs = batch["obs"]
    out: Any = static.network.apply(net, normalizer.obs(obs) if obs.dtype != jnp.uint8 else obs)
    weight = (~batch["action_is_pad"]).astype(jnp.float32)  # [b, H]
    total = jnp.maximum(weight.sum(), 1.0)
    action = batch["action"]
    if static.discrete:
        per_step = optax.softmax_cross_entropy_with_integer_labels(out, action)  # [b, H]
        correct = (jnp.argmax(out[:, 0], -1) == action[:, 0]).astype(jnp.float32)
        return (per_step * weight).sum() / total, {
            "loss/bc": (per_step * weight).sum() / total,
            "bc/accuracy": correct.mean(),
        }
    target = normalizer.action(action)
    if isinstance(out, tuple):
        mean, log_std = out
        per_step = (0.5 * ((target - mean) / jnp.exp(log_std)) ** 2 + log_std + 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
    else:
        mean = out
        per_step = ((target - mean) ** 2).sum(-1)
    loss = (per_step * weight).sum() / total
    mse = ((normalizer.unaction(mean[:, 0]) - action[:, 0]) ** 2).mean()
    return loss, {"loss/bc": loss, "bc/mse": jax.lax.stop_gradient(mse)}
