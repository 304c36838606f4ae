"""Env wrappers: ``AutoReset``, ``EpisodeStats`` and ``VecEnv``.

Training envs are ``EpisodeStats(AutoReset(env))`` (``for_training``): the
rollout never stops, a finished episode's true last observation survives in
``info["final_obs"]`` (so a time-limit truncation bootstraps from V(final
obs), not from the next episode's first observation), and completed-episode
returns come out as arrays a jitted trainer can average.

``AutoReset`` and ``EpisodeStats`` work on one env or on a ``VecEnv`` (every
array with a leading ``n`` axis). ``vectorize(env, n)`` moves them above the
``VecEnv``: there ``AutoReset`` resets only on steps where some env is done
(a ``lax.cond``), instead of computing a reset for every env on every step as
it must under ``vmap``. With 4 CartPole envs that skips the reset on most
steps; the results are those of ``VecEnv(env, n)`` except for the random keys.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from vibe.core import typing as at
from vibe.core.types import TimeStep
from vibe.envs import spaces
from vibe.envs.env import Env


@dataclasses.dataclass(frozen=True)
class Wrapper:
    """Forwards everything to ``env``; subclasses override ``reset``/``step``."""

    env: Env

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        return self.env.reset(key, params)

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        return self.env.step(key, state, action, params)

    def observation_space(self, params: Any) -> spaces.Space:
        return self.env.observation_space(params)

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        return self.env.action_space(params)


def _select(pred: at.Bool[at.Array, "*n"], on_true: Any, on_false: Any) -> Any:
    """Leafwise ``where(pred, on_true, on_false)``; ``pred`` (``[]`` or ``[n]``) broadcasts over trailing axes."""

    def select(a: at.Array, b: at.Array) -> at.Array:
        return jnp.where(pred.reshape(pred.shape + (1,) * (a.ndim - pred.ndim)), a, b)

    return jax.tree.map(select, on_true, on_false)


@dataclasses.dataclass(frozen=True)
class AutoReset(Wrapper):
    """Starts a new episode inside ``step`` when the current one ends.

    On a step with ``terminated | truncated`` the returned state and ``obs`` are
    those of a fresh reset; ``reward``, ``terminated`` and ``truncated`` still
    describe the step that ended the episode, and ``info["final_obs"]`` holds
    the observation that step really produced. On other steps
    ``info["final_obs"] == obs``. ``reset`` sets ``info["final_obs"] = obs`` so
    both return the same info keys.

    Over a ``VecEnv`` the reset runs only when some env is done, and replaces
    just those envs. Under ``vmap`` the ``lax.cond`` becomes a select, so the
    reset is then computed every step, as vmapping a single-env ``AutoReset`` does.
    """

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        state, timestep = self.env.reset(key, params)
        return state, dataclasses.replace(timestep, info={**timestep.info, "final_obs": timestep.obs})

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        step_key, reset_key = jax.random.split(key)
        next_state, timestep = self.env.step(step_key, state, action, params)
        done = timestep.terminated | timestep.truncated

        def reset_done(next_state: Any) -> tuple[Any, at.Array]:
            reset_state, reset_timestep = self.env.reset(reset_key, params)
            return _select(done, reset_state, next_state), _select(done, reset_timestep.obs, timestep.obs)

        next_state, obs = jax.lax.cond(done.any(), reset_done, lambda s: (s, timestep.obs), next_state)
        info = {**timestep.info, "final_obs": timestep.obs}
        return next_state, dataclasses.replace(timestep, obs=obs, info=info)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EpisodeStatsState:
    """State of ``EpisodeStats``: the inner state plus the running episode's totals."""

    env_state: Any
    episode_return: at.Float[at.Array, ""]
    episode_length: at.Int[at.Array, ""]


@dataclasses.dataclass(frozen=True)
class EpisodeStats(Wrapper):
    """Tracks the running episode's return and length in the env state.

    Adds to ``info`` on every step: ``done`` (``terminated | truncated``), and
    ``episode_return`` / ``episode_length`` of the episode that ended at this
    step — zero where ``done`` is False, so ``sum(info["episode_return"])`` over
    a rollout is the sum of the returns of the episodes completed in it and
    ``sum(info["done"])`` their count. Works outside or inside ``AutoReset``,
    over one env or a ``VecEnv`` (then every field has a leading ``n`` axis).
    """

    def reset(self, key: at.Key, params: Any) -> tuple[EpisodeStatsState, TimeStep]:
        env_state, timestep = self.env.reset(key, params)
        shape = jnp.shape(timestep.reward)
        zero_return = jnp.zeros(shape, jnp.float32)
        zero_length = jnp.zeros(shape, jnp.int32)
        info = {**timestep.info, "episode_return": zero_return, "episode_length": zero_length}
        info["done"] = jnp.zeros(shape, jnp.bool_)
        state = EpisodeStatsState(env_state, zero_return, zero_length)
        return state, dataclasses.replace(timestep, info=info)

    def step(
        self, key: at.Key, state: EpisodeStatsState, action: at.Array, params: Any
    ) -> tuple[EpisodeStatsState, TimeStep]:
        env_state, timestep = self.env.step(key, state.env_state, action, params)
        done = timestep.terminated | timestep.truncated
        episode_return = state.episode_return + timestep.reward
        episode_length = state.episode_length + 1
        info = {
            **timestep.info,
            "episode_return": jnp.where(done, episode_return, 0.0),
            "episode_length": jnp.where(done, episode_length, 0),
            "done": done,
        }
        next_state = EpisodeStatsState(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        return next_state, dataclasses.replace(timestep, info=info)


def for_training(env: Env) -> EpisodeStats:
    """The wrapping every trainer expects: ``EpisodeStats(AutoReset(env))``."""
    return EpisodeStats(AutoReset(env))


# Wrappers whose step and reset are elementwise over a leading env axis: ``vectorize`` lifts them above the VecEnv.
_BATCH_AGNOSTIC = (AutoReset, EpisodeStats)


@dataclasses.dataclass(frozen=True)
class VecEnv:
    """``num_envs`` copies of ``env`` vmapped; states and timesteps get a leading ``n`` axis.

    ``reset``/``step`` take one key and split it into ``num_envs``; the spaces are
    those of a single env.
    """

    env: Env
    num_envs: int

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"VecEnv.num_envs must be >= 1, got {self.num_envs}.")

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, params)

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)

    def observation_space(self, params: Any) -> spaces.Space:
        return self.env.observation_space(params)

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        return self.env.action_space(params)


def vectorize(env: Env, num_envs: int) -> Env:
    """``num_envs`` copies of ``env`` behind one env whose arrays have a leading ``n`` axis.

    The outer ``AutoReset``/``EpisodeStats`` layers of ``env`` (e.g. ``for_training(env)``) are
    applied to the ``VecEnv`` instead of vmapped with it, so ``AutoReset`` skips the reset on
    steps where no env is done: ``vectorize(for_training(env), n)`` is
    ``EpisodeStats(AutoReset(VecEnv(env, n)))``. ``step``/``reset`` take one key; the spaces are
    those of a single env.
    """
    layers = []
    while isinstance(env, _BATCH_AGNOSTIC):
        layers.append(type(env))
        env = env.env
    vec_env: Env = VecEnv(env, num_envs)
    for layer in reversed(layers):
        vec_env = layer(vec_env)
    return vec_env
