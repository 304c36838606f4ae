"""Env wrappers: ``AutoReset``, ``EpisodeStats`` and ``VecEnv``.

Training envs are ``EpisodeStats(AutoReset(env))`` (``for_training``): the
rollout never stops, a finished episode's true last observation survives in
``info["final_obs"]`` (so a time-limit truncation bootstraps from V(final
obs), not from the next episode's first observation), and completed-episode
returns come out as arrays a jitted trainer can average.
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

    def observation_space(self, params: Any) -> spaces.Box:
        return self.env.observation_space(params)

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        return self.env.action_space(params)


def _select(pred: at.Bool[at.Array, ""], on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


@dataclasses.dataclass(frozen=True)
class AutoReset(Wrapper):
    """Starts a new episode inside ``step`` when the current one ends.

    On a step with ``terminated | truncated`` the returned state and ``obs`` are
    those of a fresh reset; ``reward``, ``terminated`` and ``truncated`` still
    describe the step that ended the episode, and ``info["final_obs"]`` holds
    the observation that step really produced. On other steps
    ``info["final_obs"] == obs``. ``reset`` sets ``info["final_obs"] = obs`` so
    both return the same info keys.
    """

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        state, timestep = self.env.reset(key, params)
        return state, dataclasses.replace(timestep, info={**timestep.info, "final_obs": timestep.obs})

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        step_key, reset_key = jax.random.split(key)
        next_state, timestep = self.env.step(step_key, state, action, params)
        # Computing the reset every step and selecting is cheaper under vmap than a
        # cond, which vmap turns into the same select anyway.
        reset_state, reset_timestep = self.env.reset(reset_key, params)
        done = timestep.terminated | timestep.truncated
        next_state = _select(done, reset_state, next_state)
        obs = _select(done, reset_timestep.obs, timestep.obs)
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
    ``sum(info["done"])`` their count. Works outside or inside ``AutoReset``.
    """

    def reset(self, key: at.Key, params: Any) -> tuple[EpisodeStatsState, TimeStep]:
        env_state, timestep = self.env.reset(key, params)
        zero_return = jnp.zeros((), jnp.float32)
        zero_length = jnp.zeros((), jnp.int32)
        info = {**timestep.info, "episode_return": zero_return, "episode_length": zero_length}
        info["done"] = jnp.zeros((), jnp.bool_)
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
    """The wrapping every on-policy trainer expects: ``EpisodeStats(AutoReset(env))``."""
    return EpisodeStats(AutoReset(env))


@dataclasses.dataclass(frozen=True)
class VecEnv:
    """``num_envs`` copies of ``env`` vmapped; states and timesteps get a leading ``n`` axis.

    ``reset``/``step`` take one key and split it into ``num_envs``; the spaces are
    those of a single env. ``step_with_keys`` takes already-split keys ``[n]``
    (a rollout can split all its keys in one batched call before the scan).
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
        return self.step_with_keys(jax.random.split(key, self.num_envs), state, action, params)

    def step_with_keys(self, keys: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)

    def observation_space(self, params: Any) -> spaces.Box:
        return self.env.observation_space(params)

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        return self.env.action_space(params)
