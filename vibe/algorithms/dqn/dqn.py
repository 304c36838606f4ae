"""Double DQN with discrete actions as pure functions over an explicit ``DQNState``.

One ``train_step`` = every one of ``num_envs`` envs stepped ``train_frequency``
times with epsilon-greedy actions, the transitions added to the replay buffer
(flashbax, on device, inside the state), then ``gradient_steps`` Adam steps on
uniformly sampled minibatches, each followed by the (periodic or Polyak) target
update. Until ``learning_starts`` env steps are done the gradient steps are
skipped by a ``jax.lax.cond``, so every call runs the same compiled function.

Built for speed on a small CPU: the online network runs once on
``[obs; next_obs]`` per gradient step, a step's keys come from a few batched
splits, short loops are unrolled, and a runner loops ``make_train_step(...)``
K times in one jitted, donated call (``vibe.train.loop.make_train_chunk``).

The env must be wrapped with ``vibe.envs.wrappers.for_training`` (auto-reset
with ``info["final_obs"]`` and episode statistics).
"""

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import flashbax as fbx
import flax.struct
import jax
import jax.numpy as jnp
import optax

from vibe.algorithms.dqn import losses
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.dqn.losses import Metrics, ReplayItem
from vibe.core import typing as at
from vibe.envs import spaces
from vibe.envs.env import Env
from vibe.networks.mlp import MLP


@flax.struct.dataclass
class DQNState:
    """Everything a run needs to continue bit-for-bit; a pytree of arrays only.

    Attributes:
        params: online Q-network parameters.
        target_params: target Q-network parameters.
        opt_state: optax state (includes the learning-rate schedule's count).
        env_state: state of the ``n`` training envs (leading axis ``n``).
        obs: current observations ``[n, obs]``.
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
    obs: at.Float[at.Array, "n obs"]
    buffer_state: Any
    key: at.Key
    step: at.Int[at.Array, ""]
    env_steps: at.Int[at.Array, ""]
    gradient_steps: at.Int[at.Array, ""]


def make_network(config: DQNConfig, env: Env, env_params: Any) -> MLP:
    """The Q-network: an MLP from observations to one Q-value per action."""
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"DQN supports discrete actions only; the env has action space {action_space!r}. "
            "Pick a discrete env (CartPole-v1, Acrobot-v1, MountainCar-v0) or use SAC for continuous actions."
        )
    return MLP(config.hidden_sizes, config.activation, out_dim=action_space.n)


def q_values(network: MLP, params: Any, obs: at.Float[at.Array, "... obs"]) -> at.Float[at.Array, "... a"]:
    """Q(obs, a) for every action ``a``."""
    return cast(at.Array, network.apply(params, obs))


def make_optimizer(config: DQNConfig) -> optax.GradientTransformation:
    """clip_by_global_norm then Adam; an annealed lr's count lives in the opt state."""
    learning_rate: float | optax.Schedule = config.lr
    if config.anneal_lr:
        learning_rate = optax.linear_schedule(config.lr, 0.0, max(config.num_gradient_steps, 1))
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate))


def make_buffer(config: DQNConfig) -> Any:
    """flashbax item buffer: ``add`` takes ``ReplayItem``s with a leading batch axis,
    ``sample`` returns ``batch_size`` of them drawn uniformly with replacement."""
    return fbx.make_item_buffer(
        max_length=config.buffer_size, min_length=1, sample_batch_size=config.batch_size, add_batches=True
    )


def init(config: DQNConfig, env: Env, env_params: Any, key: at.Key) -> DQNState:
    """Initial parameters (target = online), optimizer state, empty buffer and ``num_envs`` reset envs.

    Args:
        env: a single env wrapped with ``wrappers.for_training``.
        key: raw PRNG key (``jax.random.PRNGKey(seed)``).
    """
    network = make_network(config, env, env_params)
    key, net_key, env_key = jax.random.split(key, 3)
    obs_space = env.observation_space(env_params)
    dummy_obs = jnp.zeros(obs_space.shape, obs_space.dtype)
    params = network.init(net_key, dummy_obs)
    # A copy, not the same buffers: a runner donates the state and XLA refuses to donate one buffer twice.
    target_params = jax.tree.map(jnp.copy, params)
    opt_state = make_optimizer(config).init(params)
    env_state, timestep = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(env_key, config.num_envs), env_params)
    missing = {"final_obs", "episode_return", "episode_length", "done"} - set(timestep.info)
    if missing:
        raise ValueError(f"DQN's env lacks info keys {sorted(missing)}; wrap it: vibe.envs.wrappers.for_training(env).")
    item = ReplayItem(
        obs=dummy_obs,
        action=jnp.zeros((), jnp.int32),
        reward=jnp.zeros((), jnp.float32),
        terminated=jnp.zeros((), jnp.bool_),
        next_obs=dummy_obs,
    )
    buffer_state = make_buffer(config).init(item)
    # flashbax starts its index from a Python int; fix the type so a jitted step keeps it.
    buffer_state = buffer_state.replace(current_index=jnp.zeros((), jnp.int32), is_full=jnp.zeros((), jnp.bool_))
    counters = [jnp.zeros((), jnp.int32) for _ in range(3)]  # separate buffers, donated separately
    return DQNState(params, target_params, opt_state, env_state, timestep.obs, buffer_state, key, *counters)


def collect(
    config: DQNConfig, env: Env, env_params: Any, network: MLP, state: DQNState, key: at.Key
) -> tuple[DQNState, ReplayItem, dict[str, at.Array]]:
    """Steps every env ``train_frequency`` times with epsilon-greedy actions.

    Epsilon follows ``losses.linear_epsilon`` of the env steps done before each
    vector step. Returns ``(state, items, episodes)``: the state with advanced
    envs, obs and ``env_steps``; ``ReplayItem``s with a flat leading axis
    ``train_frequency * num_envs`` (``next_obs`` = the true final observation
    on episode ends); ``episodes`` = the ``[t, n]`` arrays ``episode_return``,
    ``episode_length`` and ``done`` of ``EpisodeStats``.
    """
    t, n = config.train_frequency, config.num_envs
    num_actions = cast(int, network.out_dim)
    explore_keys, random_keys = jax.random.split(key, (2, t))
    env_keys = jax.random.split(jax.random.fold_in(key, 1), (t, n))
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    params = state.params

    def step(carry: tuple[Any, at.Array, at.Array], keys: tuple[at.Key, at.Key, at.Key]) -> tuple[Any, Any]:
        env_state, obs, env_steps = carry
        explore_key, random_key, step_keys = keys
        epsilon = losses.linear_epsilon(env_steps, config.start_e, config.end_e, config.exploration_steps)
        greedy = jnp.argmax(q_values(network, params, obs), axis=-1).astype(jnp.int32)
        random = jax.random.randint(random_key, (n,), 0, num_actions, jnp.int32)
        action = jnp.where(jax.random.uniform(explore_key, (n,)) < epsilon, random, greedy)
        env_state, timestep = step_envs(step_keys, env_state, action, env_params)
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
    state = dataclasses.replace(state, env_state=env_state, obs=obs, env_steps=env_steps)
    return state, items, episodes


def gradient_step(
    config: DQNConfig,
    network: MLP,
    optimizer: optax.GradientTransformation,
    carry: tuple[Any, Any, Any, at.Array],
    batch: ReplayItem,
) -> tuple[tuple[Any, Any, Any, at.Array], Metrics]:
    """One Adam step on the Huber loss of ``batch``, then the target update.

    ``carry = (params, target_params, opt_state, gradient_steps)``, returned updated.
    """
    params, target_params, opt_state, gradient_steps = carry
    grads, metrics = jax.grad(losses.q_loss, argnums=1, has_aux=True)(
        network.apply, params, target_params, batch, config.gamma, config.huber_delta
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    gradient_steps = gradient_steps + 1
    target_params = losses.update_target(
        params, target_params, gradient_steps, config.target_update_interval, config.tau
    )
    return (params, target_params, opt_state, gradient_steps), metrics


def learn(
    config: DQNConfig, network: MLP, buffer: Any, state: DQNState, key: at.Key
) -> tuple[tuple[Any, Any, Any, at.Array], Metrics]:
    """``gradient_steps`` gradient steps on minibatches sampled from the buffer.

    Returns ``((params, target_params, opt_state, gradient_steps), metrics)``
    with the metrics averaged over the gradient steps.
    """
    optimizer = make_optimizer(config)

    def step(carry: tuple[Any, Any, Any, at.Array], key: at.Key) -> tuple[Any, Metrics]:
        batch = buffer.sample(state.buffer_state, key).experience
        return gradient_step(config, network, optimizer, carry, batch)

    carry = (state.params, state.target_params, state.opt_state, state.gradient_steps)
    keys = jax.random.split(key, config.gradient_steps)
    carry, metrics = jax.lax.scan(step, carry, keys, unroll=min(config.gradient_steps, 4))
    return carry, {name: value.mean() for name, value in metrics.items()}


def train_step(
    config: DQNConfig, env: Env, env_params: Any, network: MLP, buffer: Any, state: DQNState
) -> tuple[DQNState, Metrics]:
    """Collect ``steps_per_update`` transitions into the buffer, then learn (after warm-up).

    Returns:
        ``(state, metrics)``; float32 scalar metrics: ``loss/q`` and ``q/mean``
        (means over this step's gradient steps; 0 during warm-up, which lowers
        the average of a chunk that straddles its end), ``epsilon``
        (at the start of the step), and over the episodes completed in it
        ``episode/return_sum``, ``episode/length_sum``, ``episode/count``.
    """
    key, collect_key, learn_key = jax.random.split(state.key, 3)
    epsilon = losses.linear_epsilon(state.env_steps, config.start_e, config.end_e, config.exploration_steps)
    state, items, episodes = collect(config, env, env_params, network, state, collect_key)
    state = dataclasses.replace(state, buffer_state=buffer.add(state.buffer_state, items))

    def skip(state: DQNState, key: at.Key) -> tuple[tuple[Any, Any, Any, at.Array], Metrics]:
        zero = jnp.zeros((), jnp.float32)
        return (state.params, state.target_params, state.opt_state, state.gradient_steps), {
            "loss/q": zero,
            "q/mean": zero,
        }

    learning = state.env_steps >= config.learning_starts
    (params, target_params, opt_state, gradient_steps), metrics = jax.lax.cond(
        learning, lambda s, k: learn(config, network, buffer, s, k), skip, state, learn_key
    )
    metrics = {
        **metrics,
        "epsilon": epsilon,
        "episode/return_sum": episodes["episode_return"].sum(),
        "episode/length_sum": episodes["episode_length"].sum().astype(jnp.float32),
        "episode/count": episodes["done"].sum().astype(jnp.float32),
    }
    state = dataclasses.replace(
        state,
        params=params,
        target_params=target_params,
        opt_state=opt_state,
        gradient_steps=gradient_steps,
        key=key,
        step=state.step + 1,
    )
    return state, metrics


def act(network: MLP, params: Any, obs: at.Float[at.Array, "... obs"]) -> at.Int[at.Array, "..."]:
    """Greedy int32 actions ``argmax_a Q(obs, a)``."""
    return jnp.argmax(q_values(network, params, obs), axis=-1).astype(jnp.int32)


def make_train_step(config: DQNConfig, env: Env, env_params: Any) -> Callable[[DQNState], tuple[DQNState, Metrics]]:
    """``train_step`` with the static parts bound: ``state -> (state, metrics)``.

    Run it K times inside one jitted, donated function for a chunk
    (``vibe.train.loop.make_train_chunk``).
    """
    network = make_network(config, env, env_params)
    buffer = make_buffer(config)

    def step(state: DQNState) -> tuple[DQNState, Metrics]:
        return train_step(config, env, env_params, network, buffer, state)

    return step
