"""Double DQN with discrete actions: the static record ``DQN`` and pure functions over ``DQNState``.

One ``train_step`` = every one of ``num_envs`` envs stepped ``train_frequency``
times with epsilon-greedy actions, the transitions added to the replay buffer
(flashbax, on device, inside the state), then ``gradient_steps`` Adam steps on
uniformly sampled minibatches, each followed by the (periodic or Polyak) target
update. Until ``learning_starts`` env steps are done the gradient steps are
skipped by a ``jax.lax.cond``, so every call runs the same compiled function.

Built for speed on a small CPU: the online network runs once on
``[obs; next_obs]`` per gradient step, a step's keys come from a few batched
splits, short loops are unrolled, and the envs are vectorised with auto-reset
above the vectorised env (resets run only on steps where an env is done).
Image observations stay in their env dtype (uint8, bool) in the buffer and
become floats inside the network.
"""

import dataclasses
from typing import Any, ClassVar, cast

import flashbax as fbx
import flax.struct
import jax
import jax.numpy as jnp
import optax

from vibe.algorithms import algorithm, metrics
from vibe.algorithms.dqn import losses
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.dqn.losses import ReplayItem
from vibe.algorithms.metrics import Metrics
from vibe.core import typing as at
from vibe.envs import spaces
from vibe.envs.env import Env
from vibe.networks import encoder
from vibe.networks.models import QNetwork

# The gradient-step carry: (params, target_params, opt_state, gradient_steps).
Carry = tuple[Any, Any, Any, at.Array]


@flax.struct.dataclass
class DQNState:
    """Everything a run needs to continue bit-for-bit; a pytree of arrays only.

    Attributes:
        params: online Q-network parameters.
        target_params: target Q-network parameters.
        opt_state: optax state (includes the learning-rate schedule's count).
        env_state: state of the ``n`` training envs (leading axis ``n``).
        obs: current observations ``[n, *obs]``.
        buffer_state: flashbax item-buffer state holding ``ReplayItem``s.
        key: raw ``uint32[2]`` PRNG key of the next train_step.
        step: int32 number of ``train_step`` calls done.
        env_steps: int32 env steps done (all envs); DQNConfig keeps runs below 2**31.
        gradient_steps: int32 gradient steps done (the target-update clock).
    """

    params: Any
    target_params: Any
    opt_state: Any
    env_state: Any
    obs: at.Array
    buffer_state: Any
    key: at.Key
    step: at.Int[at.Array, ""]
    env_steps: at.Int[at.Array, ""]
    gradient_steps: at.Int[at.Array, ""]


@dataclasses.dataclass(frozen=True)
class DQN(algorithm.OnlineAlgorithm[DQNConfig]):
    """DQN's static record: everything fixed for a run, built once by ``DQN.make``."""

    name: ClassVar[str] = "dqn"
    network: QNetwork
    optimizer: optax.GradientTransformation
    buffer: Any  # flashbax item buffer: pure init/add/sample functions

    @classmethod
    def make(cls, config: DQNConfig, env: Env, env_params: Any, *, env_id: str = "the env") -> "DQN":
        action_space = env.action_space(env_params)
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"DQN supports discrete actions only; {env_id} has action space {action_space!r}. "
                "Pick a discrete env (CartPole-v1, Acrobot-v1, MountainCar-v0) or use SAC for continuous actions."
            )
        obs_space = env.observation_space(env_params)
        encoder.check_observation(config.encoder, obs_space, env_id)
        network = QNetwork(config.encoder, action_space.n, obs_ndim=len(obs_space.shape))
        vec_env = algorithm.training_env(env, env_params, config.num_envs, owner="DQN")
        buffer = fbx.make_item_buffer(
            max_length=config.buffer_size, min_length=1, sample_batch_size=config.batch_size, add_batches=True
        )
        return cls(config, env, env_params, vec_env, network, make_optimizer(config), buffer)

    def init(self, key: at.Key) -> DQNState:
        """Initial parameters (target = online), optimizer state, empty buffer and ``num_envs`` reset envs."""
        key, net_key, env_key = jax.random.split(key, 3)
        obs = algorithm.example_obs(self.env.observation_space(self.env_params))
        params = self.network.init(net_key, obs)
        # A copy, not the same buffers: a runner donates the state and XLA refuses to donate one buffer twice.
        target_params = jax.tree.map(jnp.copy, params)
        env_state, timestep = self.vec_env.reset(env_key, self.env_params)
        zero = jnp.zeros((), jnp.float32)
        item = ReplayItem(obs, jnp.zeros((), jnp.int32), zero, jnp.zeros((), jnp.bool_), obs)
        buffer_state = jax.tree.map(algorithm.strong, self.buffer.init(item))
        counters = (algorithm.counter(), algorithm.counter(), algorithm.counter())
        opt_state = self.optimizer.init(params)
        return DQNState(params, target_params, opt_state, env_state, timestep.obs, buffer_state, key, *counters)

    def train_step(self, state: DQNState) -> tuple[DQNState, Metrics]:
        """Collect ``steps_per_update`` transitions into the buffer, then learn (after warm-up).

        Metrics: ``loss/q`` and ``q/mean`` (means over this step's gradient steps; 0 during warm-up),
        ``epsilon`` (at the start of the step), and the episodes completed in it.
        """
        config = self.config
        key, collect_key, learn_key = jax.random.split(state.key, 3)
        epsilon = losses.linear_epsilon(state.env_steps, config.start_e, config.end_e, config.exploration_steps)
        state, items, episodes = collect(self, state, collect_key)
        state = dataclasses.replace(state, buffer_state=self.buffer.add(state.buffer_state, items))

        def skip(state: DQNState, key: at.Key) -> tuple[Carry, dict[str, at.Array]]:
            zero = jnp.zeros((), jnp.float32)
            carry = (state.params, state.target_params, state.opt_state, state.gradient_steps)
            return carry, {"loss/q": zero, "q/mean": zero}

        learning = state.env_steps >= config.learning_starts
        carry, loss_metrics = jax.lax.cond(learning, lambda s, k: learn(self, s, k), skip, state, learn_key)
        params, target_params, opt_state, gradient_steps = carry
        state = dataclasses.replace(
            state,
            params=params,
            target_params=target_params,
            opt_state=opt_state,
            gradient_steps=gradient_steps,
            key=key,
            step=state.step + 1,
        )
        return state, metrics.from_episodes({**loss_metrics, "epsilon": epsilon}, episodes)

    def act(self, params: Any, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Int[at.Array, "..."]:
        """Greedy int32 actions ``argmax_a Q(obs, a)``; with ``greedy=False``, epsilon-greedy with ``end_e``."""
        action = jnp.argmax(q_values(self, params, obs), axis=-1).astype(jnp.int32)
        if greedy:
            return action
        explore_key, random_key = jax.random.split(key)
        random = jax.random.randint(random_key, action.shape, 0, self.network.num_actions, jnp.int32)
        return jnp.where(jax.random.uniform(explore_key, action.shape) < self.config.end_e, random, action)


def q_values(static: DQN, params: Any, obs: at.Array) -> at.Float[at.Array, "... a"]:
    """Q(obs, a) for every action ``a``."""
    return cast(at.Array, static.network.apply(params, obs))


def make_optimizer(config: DQNConfig) -> optax.GradientTransformation:
    """clip_by_global_norm then Adam; an annealed lr's count lives in the opt state."""
    learning_rate: float | optax.Schedule = config.lr
    if config.anneal_lr:
        learning_rate = optax.linear_schedule(config.lr, 0.0, max(config.num_gradient_steps, 1))
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate))


def collect(static: DQN, state: DQNState, key: at.Key) -> tuple[DQNState, ReplayItem, dict[str, at.Array]]:
    """Steps every env ``train_frequency`` times with epsilon-greedy actions.

    Epsilon follows ``losses.linear_epsilon`` of the env steps done before each
    vector step. Returns ``(state, items, episodes)``: the state with advanced
    envs, obs and ``env_steps``; ``ReplayItem``s with a flat leading axis
    ``train_frequency * num_envs`` (``next_obs`` = the true final observation
    on episode ends); ``episodes`` = the ``[t, n]`` arrays ``episode_return``,
    ``episode_length`` and ``done`` of ``EpisodeStats``.
    """
    config, params = static.config, state.params
    t, n = config.train_frequency, config.num_envs
    explore_keys, random_keys, env_keys = jax.random.split(key, (3, t))

    def step(carry: tuple[Any, at.Array, at.Array], keys: tuple[at.Key, at.Key, at.Key]) -> tuple[Any, Any]:
        env_state, obs, env_steps = carry
        explore_key, random_key, env_key = keys
        epsilon = losses.linear_epsilon(env_steps, config.start_e, config.end_e, config.exploration_steps)
        greedy = jnp.argmax(q_values(static, params, obs), axis=-1).astype(jnp.int32)
        random = jax.random.randint(random_key, (n,), 0, static.network.num_actions, jnp.int32)
        action = jnp.where(jax.random.uniform(explore_key, (n,)) < epsilon, random, greedy)
        env_state, timestep = static.vec_env.step(env_key, env_state, action, static.env_params)
        info = timestep.info
        item = ReplayItem(obs, action, timestep.reward.astype(jnp.float32), timestep.terminated, info["final_obs"])
        episodes = {k: info[k] for k in ("episode_return", "episode_length", "done")}
        return (env_state, timestep.obs, env_steps + n), (item, episodes)

    carry = (state.env_state, state.obs, state.env_steps)
    # Unrolled when short: one vector step per train_step (the default) then compiles to no loop at all.
    (env_state, obs, env_steps), (items, episodes) = jax.lax.scan(
        step, carry, (explore_keys, random_keys, env_keys), unroll=min(t, 4)
    )
    items = jax.tree.map(lambda x: x.reshape((t * n, *x.shape[2:])), items)
    return dataclasses.replace(state, env_state=env_state, obs=obs, env_steps=env_steps), items, episodes


def gradient_step(static: DQN, carry: Carry, batch: ReplayItem) -> tuple[Carry, dict[str, at.Array]]:
    """One Adam step on the Huber loss of ``batch``, then the target update."""
    config = static.config
    params, target_params, opt_state, gradient_steps = carry
    grads, loss_metrics = jax.grad(losses.q_loss, argnums=1, has_aux=True)(
        static.network.apply, params, target_params, batch, config.gamma, config.huber_delta
    )
    updates, opt_state = static.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    gradient_steps = gradient_steps + 1
    target_params = losses.update_target(
        params, target_params, gradient_steps, config.target_update_interval, config.tau
    )
    return (params, target_params, opt_state, gradient_steps), loss_metrics


def learn(static: DQN, state: DQNState, key: at.Key) -> tuple[Carry, dict[str, at.Array]]:
    """``gradient_steps`` gradient steps on minibatches sampled from the buffer (metrics averaged)."""

    def step(carry: Carry, key: at.Key) -> tuple[Carry, dict[str, at.Array]]:
        batch = static.buffer.sample(state.buffer_state, key).experience
        return gradient_step(static, carry, batch)

    carry = (state.params, state.target_params, state.opt_state, state.gradient_steps)
    keys = jax.random.split(key, static.config.gradient_steps)
    carry, loss_metrics = jax.lax.scan(step, carry, keys, unroll=min(static.config.gradient_steps, 4))
    return carry, {name: value.mean() for name, value in loss_metrics.items()}
