"""PPO with discrete or continuous actions as pure functions over an explicit ``PPOState``.

One ``train_step`` = one rollout of ``num_steps`` x ``num_envs`` env steps,
GAE, then ``update_epochs`` passes of ``num_minibatches`` Adam steps. Built so
a runner can ``jax.lax.scan`` ``make_train_step(...)`` K times inside one
jitted, donated function:

- the rollout runs only the policy MLP; V(obs) and V(next_obs) are computed
  after it in batched critic passes over all ``[t, n]`` observations;
- the rollout's action and env keys are split in two batched calls before the scan;
- actions come from the Gumbel-max trick on the logits, or mean + std * normal
  noise, with the noise of the whole rollout drawn before its scan and
  closed-form log-probabilities (no distribution objects);
- minibatches come from one ``jax.random.permutation`` and a reshape.

The action space picks the network once, at construction: ``ActorCritic``
(logits) for ``Discrete``, ``GaussianActorCritic`` (mean and a learned,
state-independent log-std) for a 1-D ``Box``. The few functions that differ
(``sample_action``, ``log_prob_and_entropy``, ``greedy_action``) dispatch on
the network's Python type, so one traced ``train_step`` serves both. Box
actions are clipped to the bounds only where they enter the env
(``env_action``): the rollout stores the unclipped sample, whose
log-probability is what the ratio needs.

The env must be wrapped with ``vibe.envs.wrappers.for_training`` (auto-reset
with ``info["final_obs"]`` and episode statistics); PPO vectorises it itself
(``make_vec_env``: ``wrappers.vectorize``, which resets only on steps where an
env is done), adding ``NormalizeObservation`` on top when
``config.normalize_obs``. Then ``obs``, ``Transition.obs`` and ``next_obs`` are
normalised, and ``policy_input`` maps raw observations to the network's input.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import flax.struct
import jax
import jax.numpy as jnp
import optax

from vibe.algorithms.ppo import losses
from vibe.algorithms.ppo.config import PPOConfig
from vibe.core import typing as at
from vibe.core.types import Transition
from vibe.envs import normalize, spaces, wrappers
from vibe.envs.env import Env
from vibe.networks.mlp import ActorCritic, GaussianActorCritic

Metrics = dict[str, at.Array]
Network = ActorCritic | GaussianActorCritic
# What ``Network.policy`` returns: logits ``[..., a]``, or ``(mean, log_std)`` each ``[..., act]``.
PolicyOutput = Any


@flax.struct.dataclass
class PPOState:
    """Everything a run needs to continue bit-for-bit; a pytree of arrays only.

    Attributes:
        params: actor-critic parameters (``ActorCritic`` or ``GaussianActorCritic``).
        opt_state: optax state (includes the learning-rate schedule's count).
        env_state: state of the ``n`` training envs (leading axis ``n``); with
            ``normalize_obs`` a ``NormalizeObservationState`` holding it and the
            running observation statistics (``.stats``, no ``n`` axis).
        obs: current observations ``[n, obs]`` (normalised with ``normalize_obs``).
        key: raw ``uint32[2]`` PRNG key of the next rollout and shuffle.
        step: int32 number of ``train_step`` calls done.
        env_steps: int32 env steps done (all envs); wraps past 2**31 without x64.
    """

    params: Any
    opt_state: Any
    env_state: Any
    obs: at.Float[at.Array, "n obs"]
    key: at.Key
    step: at.Int[at.Array, ""]
    env_steps: at.Int[at.Array, ""]


def make_vec_env(config: PPOConfig, env: Env) -> Env:
    """``num_envs`` copies of the (``for_training``-wrapped) ``env``, observation-normalised if configured.

    Normalisation sits on top of the vectorised env so the statistics are shared by all envs
    and ``info["final_obs"]`` is normalised with the same statistics as ``obs``.
    """
    vec_env = wrappers.vectorize(env, config.num_envs)
    return normalize.NormalizeObservation(vec_env) if config.normalize_obs else vec_env


def policy_input(config: PPOConfig, env: Env, state: PPOState, obs: at.Array) -> at.Array:
    """The network input for raw observations ``obs`` (any leading axes) of the plain env.

    With ``normalize_obs``: normalised with ``state``'s running statistics, frozen (not updated);
    otherwise ``obs`` unchanged. Evaluation and serving call this before ``act``.
    """
    vec_env = make_vec_env(config, env)
    if isinstance(vec_env, normalize.NormalizeObservation):
        return vec_env.normalize(state.env_state, obs)
    return obs


def make_network(config: PPOConfig, env: Env, env_params: Any) -> Network:
    """The actor-critic for ``env``'s action space: categorical for ``Discrete``, Gaussian for a 1-D float ``Box``."""
    action_space = env.action_space(env_params)
    if isinstance(action_space, spaces.Discrete):
        return ActorCritic(action_dim=action_space.n, hidden_sizes=config.hidden_sizes, activation=config.activation)
    if len(action_space.shape) != 1 or not jnp.issubdtype(action_space.dtype, jnp.floating):
        raise ValueError(
            f"PPO supports Discrete and 1-D float Box action spaces; the env has {action_space!r}. "
            "Flatten the action space with a wrapper first."
        )
    return GaussianActorCritic(
        action_dim=action_space.shape[0],
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        init_log_std=config.init_log_std,
    )


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """clip_by_global_norm then Adam(eps=1e-5); the lr schedule's count lives in the opt state."""
    learning_rate: float | optax.Schedule = config.lr
    if config.anneal_lr:
        # Linear to 0 over every gradient step of the run (PureJaxRL anneals the same way per update).
        total = config.num_updates * config.update_epochs * config.num_minibatches
        learning_rate = optax.linear_schedule(config.lr, 0.0, total)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate, eps=1e-5))


def policy_output(network: Network, params: Any, obs: at.Float[at.Array, "... obs"]) -> PolicyOutput:
    """The policy MLP alone (the rollout does not need the critic): logits, or ``(mean, log_std)``."""
    return network.apply(params, obs, method="policy")


def state_values(network: Network, params: Any, obs: at.Float[at.Array, "... obs"]) -> at.Float[at.Array, "..."]:
    """The critic MLP alone: V(obs) for any leading axes, e.g. all ``[t, n]`` observations at once."""
    return cast(at.Array, network.apply(params, obs, method="value"))


def draw_noise(network: Network, key: at.Key, batch_shape: tuple[int, ...]) -> at.Array:
    """All the randomness ``sample_action`` needs for ``batch_shape`` policy outputs, in one call:
    Gumbel noise ``[*batch_shape, a]`` (discrete) or standard normal noise ``[*batch_shape, act]`` (Box).

    The rollout draws it for every step before its scan, so no PRNG runs inside the loop.
    """
    draw = jax.random.normal if isinstance(network, GaussianActorCritic) else jax.random.gumbel
    return draw(key, (*batch_shape, network.action_dim))


def sample_action(
    network: Network, output: PolicyOutput, noise: at.Array
) -> tuple[at.Array, at.Float[at.Array, "..."]]:
    """``(action, log_prob)`` sampled from the policy ``output`` with ``draw_noise``'s ``noise``.

    Discrete: int32 ``[...]``, ``argmax(logits + gumbel)`` (the Gumbel-max trick, as
    ``jax.random.categorical`` samples). Box: ``mean + exp(log_std) * noise``, float ``[..., act]``, NOT clipped.
    """
    if isinstance(network, GaussianActorCritic):
        mean, log_std = output
        action = mean + jnp.exp(log_std) * noise
        return action, losses.gaussian_log_prob(mean, log_std, action)
    action = jnp.argmax(output + noise, axis=-1).astype(jnp.int32)
    return action, losses.categorical_log_prob(output, action)


def log_prob_and_entropy(
    network: Network, output: PolicyOutput, action: at.Array
) -> tuple[at.Float[at.Array, "..."], at.Float[at.Array, "..."]]:
    """log pi(action) and the entropy of the policy ``output``, per sample."""
    if isinstance(network, GaussianActorCritic):
        mean, log_std = output
        return losses.gaussian_log_prob(mean, log_std, action), losses.gaussian_entropy(log_std)
    return losses.categorical_log_prob(output, action), losses.categorical_entropy(output)


def greedy_action(network: Network, output: PolicyOutput) -> at.Array:
    """The policy's mode: the most likely discrete action (int32), or the Gaussian mean (not clipped)."""
    if isinstance(network, GaussianActorCritic):
        return output[0]
    return jnp.argmax(output, axis=-1).astype(jnp.int32)


def env_action(action_space: spaces.Discrete | spaces.Box, action: at.Array) -> at.Array:
    """What the env receives: Box actions clipped to ``[low, high]``; discrete actions unchanged."""
    if isinstance(action_space, spaces.Box):
        return jnp.clip(action, action_space.low, action_space.high)
    return action


def init(config: PPOConfig, env: Env, env_params: Any, key: at.Key) -> PPOState:
    """Initial parameters, optimizer state and ``num_envs`` freshly reset envs.

    Args:
        env: a single env wrapped with ``wrappers.for_training``.
        key: raw PRNG key, e.g. ``jax.random.PRNGKey(seed)``.
    """
    network = make_network(config, env, env_params)
    key, net_key, env_key = jax.random.split(key, 3)
    obs_space = env.observation_space(env_params)
    params = network.init(net_key, jnp.zeros(obs_space.shape, obs_space.dtype))
    opt_state = make_optimizer(config).init(params)
    env_state, timestep = make_vec_env(config, env).reset(env_key, env_params)
    missing = {"final_obs", "episode_return", "episode_length", "done"} - set(timestep.info)
    if missing:
        raise ValueError(f"PPO's env lacks info keys {sorted(missing)}; wrap it: vibe.envs.wrappers.for_training(env).")
    # Two separate zeros: a runner donates the state, and XLA refuses to donate one buffer twice.
    step, env_steps = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    return PPOState(params, opt_state, env_state, timestep.obs, key, step, env_steps)


def collect_rollout(
    config: PPOConfig, env: Env, env_params: Any, network: Network, state: PPOState
) -> tuple[PPOState, Transition, dict[str, at.Array]]:
    """Steps ``num_envs`` envs for ``num_steps`` steps with the current policy.

    Returns:
        ``(state, transitions, episodes)``: the state with advanced envs, obs,
        key and ``env_steps``; ``Transition`` with ``[t, n]`` leading axes
        (``action`` = the sampled action, unclipped; the env got ``env_action`` of it;
        ``value`` = V(obs) from one batched critic pass after the rollout;
        ``next_obs`` = the true next observation); ``episodes`` = the
        ``[t, n]`` arrays ``episode_return``, ``episode_length`` and ``done``
        from ``EpisodeStats`` (returns and lengths are 0 where not done).
    """
    key, noise_key, env_key = jax.random.split(state.key, 3)
    noise = draw_noise(network, noise_key, (config.num_steps, config.num_envs))
    env_keys = jax.random.split(env_key, config.num_steps)
    step_envs = make_vec_env(config, env).step
    action_space = env.action_space(env_params)
    params = state.params

    def step(carry: tuple[Any, at.Array], keys: tuple[at.Array, at.Key]) -> tuple[tuple[Any, at.Array], Any]:
        env_state, obs = carry
        step_noise, env_key = keys
        action, log_prob = sample_action(network, policy_output(network, params, obs), step_noise)
        env_state, timestep = step_envs(env_key, env_state, env_action(action_space, action), env_params)
        info = timestep.info
        out = (obs, action, log_prob, timestep.reward, timestep.terminated, timestep.truncated, info["final_obs"])
        episodes = {k: info[k] for k in ("episode_return", "episode_length", "done")}
        return (env_state, timestep.obs), (out, episodes)

    (env_state, obs), (out, episodes) = jax.lax.scan(step, (state.env_state, state.obs), (noise, env_keys))
    obs_seq, action, log_prob, reward, terminated, truncated, next_obs = out
    value = state_values(network, params, obs_seq)
    transitions = Transition(obs_seq, action, reward, terminated, truncated, next_obs, log_prob, value)
    state = dataclasses.replace(
        state, env_state=env_state, obs=obs, key=key, env_steps=state.env_steps + config.batch_size
    )
    return state, transitions, episodes


def update_minibatch(
    config: PPOConfig, network: Network, params: Any, opt_state: Any, minibatch: losses.PPOBatch
) -> tuple[Any, Any, Metrics]:
    """One clipped-loss gradient step on ``minibatch`` (leading axis ``minibatch_size``)."""

    def loss_fn(params: Any) -> tuple[at.Array, Metrics]:
        output, value = cast(tuple[PolicyOutput, at.Array], network.apply(params, minibatch.obs))
        log_prob, entropy = log_prob_and_entropy(network, output, minibatch.action)
        return losses.ppo_loss(log_prob, entropy, value, minibatch, config.clip_eps, config.vf_coef, config.ent_coef)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = make_optimizer(config).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics


def update_epoch(
    config: PPOConfig, network: Network, params: Any, opt_state: Any, batch: losses.PPOBatch, key: at.Key
) -> tuple[Any, Any, Metrics]:
    """One pass over ``batch`` (leading axis ``batch_size``) in shuffled minibatches.

    Returns:
        ``(params, opt_state, metrics)`` with metrics stacked over minibatches ``[num_minibatches]``.
    """
    permutation = jax.random.permutation(key, config.batch_size)
    shape = (config.num_minibatches, config.minibatch_size)
    minibatches = jax.tree.map(lambda x: jnp.take(x, permutation, axis=0).reshape(shape + x.shape[1:]), batch)

    def step(carry: tuple[Any, Any], minibatch: losses.PPOBatch) -> tuple[tuple[Any, Any], Metrics]:
        params, opt_state, metrics = update_minibatch(config, network, *carry, minibatch)
        return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(step, (params, opt_state), minibatches)
    return params, opt_state, metrics


def _merge_time_and_envs(x: at.Array) -> at.Array:
    """``[t, n, ...] -> [t * n, ...]``."""
    return x.reshape((x.shape[0] * x.shape[1], *x.shape[2:]))


def train_step(
    config: PPOConfig, env: Env, env_params: Any, network: Network, state: PPOState
) -> tuple[PPOState, Metrics]:
    """One rollout, GAE, and ``update_epochs`` epochs of minibatch updates.

    Returns:
        ``(state, metrics)``; float32 scalar metrics: ``loss/total``,
        ``loss/policy``, ``loss/value``, ``loss/entropy``, ``loss/approx_kl``
        (means over all minibatch steps), and over the episodes completed in
        this rollout ``episode/return_sum``, ``episode/length_sum``,
        ``episode/count`` (a host averages a chunk as sum / count).
    """
    state, traj, episodes = collect_rollout(config, env, env_params, network, state)
    next_values = state_values(network, state.params, traj.next_obs)
    advantages, targets = losses.gae(
        traj.reward, traj.value, next_values, traj.terminated, traj.truncated, config.gamma, config.gae_lambda
    )
    batch = losses.PPOBatch(
        obs=_merge_time_and_envs(traj.obs),
        action=_merge_time_and_envs(traj.action),
        log_prob=_merge_time_and_envs(traj.log_prob),
        value=_merge_time_and_envs(traj.value),
        advantage=_merge_time_and_envs(advantages),
        target=_merge_time_and_envs(targets),
    )
    key, epoch_key = jax.random.split(state.key)

    def epoch(carry: tuple[Any, Any], key: at.Key) -> tuple[tuple[Any, Any], Metrics]:
        params, opt_state, metrics = update_epoch(config, network, *carry, batch, key)
        return (params, opt_state), metrics

    epoch_keys = jax.random.split(epoch_key, config.update_epochs)
    (params, opt_state), loss_metrics = jax.lax.scan(epoch, (state.params, state.opt_state), epoch_keys)
    metrics = {name: value.mean() for name, value in loss_metrics.items()}
    metrics["episode/return_sum"] = episodes["episode_return"].sum()
    metrics["episode/length_sum"] = episodes["episode_length"].sum().astype(jnp.float32)
    metrics["episode/count"] = episodes["done"].sum().astype(jnp.float32)
    state = dataclasses.replace(state, params=params, opt_state=opt_state, key=key, step=state.step + 1)
    return state, metrics


def act(
    network: Network,
    action_space: spaces.Discrete | spaces.Box,
    params: Any,
    obs: at.Float[at.Array, "... obs"],
    key: at.Key,
    greedy: bool,
) -> at.Array:
    """Env actions for ``obs``: the mode when ``greedy`` (argmax, or the Gaussian mean), else a
    sample; Box actions clipped to ``action_space``'s bounds."""
    output = policy_output(network, params, obs)
    if greedy:
        action = greedy_action(network, output)
    else:
        batch_shape = (output[0] if isinstance(network, GaussianActorCritic) else output).shape[:-1]
        action = sample_action(network, output, draw_noise(network, key, batch_shape))[0]
    return env_action(action_space, action)


def make_train_step(config: PPOConfig, env: Env, env_params: Any) -> Callable[[PPOState], tuple[PPOState, Metrics]]:
    """``train_step`` with the static parts bound: ``state -> (state, metrics)``.

    Scan it K times inside one jitted, donated function for a chunk::

        step = make_train_step(config, env, env_params)
        chunk = jax.jit(lambda s: jax.lax.scan(lambda s, _: step(s), s, None, length=K), donate_argnums=0)
    """
    network = make_network(config, env, env_params)

    def step(state: PPOState) -> tuple[PPOState, Metrics]:
        return train_step(config, env, env_params, network, state)

    return step
