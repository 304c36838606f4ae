"""`DQN`: the algorithm bound to its config and environment, in the shape the runner drives.

Usage::

    algo = DQN(DQNConfig(), *gymnax_env.make("CartPole-v1"))
    state = algo.init(jax.random.PRNGKey(0))
    state, metrics = algo.train_step(state)
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from vibe.algorithms.dqn import dqn
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.dqn.losses import Metrics
from vibe.core import typing as at
from vibe.envs import wrappers
from vibe.envs.env import Env


@dataclasses.dataclass(frozen=True)
class DQN:
    """Double DQN on `env` (unwrapped; training wraps it with auto-reset and episode statistics)."""

    config: DQNConfig
    env: Env  # the plain env, used as is for evaluation
    env_params: Any
    name: str = "dqn"

    def __post_init__(self) -> None:
        train_env = wrappers.for_training(self.env)
        object.__setattr__(self, "_train_env", train_env)
        object.__setattr__(self, "_network", dqn.make_network(self.config, train_env, self.env_params))
        object.__setattr__(self, "_train_step", dqn.make_train_step(self.config, train_env, self.env_params))

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.config.steps_per_update

    def init(self, key: at.Key) -> dqn.DQNState:
        return dqn.init(self.config, self._train_env, self.env_params, key)  # type: ignore[attr-defined]

    def train_step(self, state: dqn.DQNState) -> tuple[dqn.DQNState, Metrics]:
        return self._train_step(state)  # type: ignore[attr-defined]

    def greedy_policy(self, state: dqn.DQNState) -> Callable[[jax.Array, jax.Array], jax.Array]:
        network, params = self._network, state.params  # type: ignore[attr-defined]
        return lambda obs, key: dqn.act(network, params, obs)
