"""`SAC`: the algorithm bound to its config and environment, in the shape the runner drives.

Usage::

    algo = SAC(SACConfig(), *gymnax_env.make("Pendulum-v1"))
    state = algo.init(jax.random.PRNGKey(0))
    state, metrics = algo.train_step(state)
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax

from vibe.algorithms.sac import networks, sac
from vibe.algorithms.sac.config import SACConfig
from vibe.core import typing as at
from vibe.envs import wrappers
from vibe.envs.env import Env


@dataclasses.dataclass(frozen=True)
class SAC:
    """SAC on `env` (unwrapped; training wraps it with auto-reset and episode statistics)."""

    config: SACConfig
    env: Env  # the plain env, used as is for evaluation
    env_params: Any
    name: str = "sac"

    def __post_init__(self) -> None:
        train_env = wrappers.for_training(self.env)
        static = sac.make_static(self.config, train_env, self.env_params)
        object.__setattr__(self, "_static", static)
        # Jitted: eager flax init of the networks op by op takes seconds on CPU; one compile is faster.
        init = jax.jit(functools.partial(sac.init, self.config, static, train_env, self.env_params))
        object.__setattr__(self, "_init", init)
        object.__setattr__(self, "_train_step", sac.make_train_step(self.config, train_env, self.env_params, static))

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.config.num_envs

    def init(self, key: at.Key) -> sac.SACState:
        return self._init(key)  # type: ignore[attr-defined]

    def train_step(self, state: sac.SACState) -> tuple[sac.SACState, sac.Metrics]:
        return self._train_step(state)  # type: ignore[attr-defined]

    def greedy_policy(self, state: sac.SACState) -> Callable[[jax.Array, jax.Array], jax.Array]:
        static, params = self._static, state.params.actor  # type: ignore[attr-defined]
        return lambda obs, key: networks.greedy_action(static.actor, params, obs, static.low, static.high)
