"""`PPO`: the algorithm bound to its config and environment, in the shape the runner drives.

Usage::

    algo = PPO(config, *gymnax_env.make("CartPole-v1"))  # or a Box env such as "Pendulum-v1"
    state = algo.init(jax.random.PRNGKey(0))
    state, metrics = algo.train_step(state)
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from vibe.algorithms.ppo import ppo
from vibe.algorithms.ppo.config import PPOConfig
from vibe.core import typing as at
from vibe.envs import wrappers
from vibe.envs.env import Env


@dataclasses.dataclass(frozen=True)
class PPO:
    """PPO on `env` (unwrapped; training wraps it with auto-reset and episode statistics)."""

    config: PPOConfig
    env: Env  # the plain env, used as is for evaluation
    env_params: Any
    name: str = "ppo"

    def __post_init__(self) -> None:
        train_env = wrappers.for_training(self.env)
        object.__setattr__(self, "_train_env", train_env)
        object.__setattr__(self, "_network", ppo.make_network(self.config, train_env, self.env_params))
        object.__setattr__(self, "_action_space", self.env.action_space(self.env_params))
        object.__setattr__(self, "_train_step", ppo.make_train_step(self.config, train_env, self.env_params))

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.config.batch_size

    def init(self, key: at.Key) -> ppo.PPOState:
        return ppo.init(self.config, self._train_env, self.env_params, key)  # type: ignore[attr-defined]

    def train_step(self, state: ppo.PPOState) -> tuple[ppo.PPOState, ppo.Metrics]:
        return self._train_step(state)  # type: ignore[attr-defined]

    def greedy_policy(self, state: ppo.PPOState) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Greedy actions for raw observations of the plain env: normalised first with the state's
        frozen statistics when ``config.normalize_obs`` (works inside ``jax.vmap`` over seeds)."""
        network, action_space, params = self._network, self._action_space, state.params  # type: ignore[attr-defined]
        config, train_env = self.config, self._train_env  # type: ignore[attr-defined]

        def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
            network_obs = ppo.policy_input(config, train_env, state, obs)
            return ppo.act(network, action_space, params, network_obs, key, greedy=True)

        return policy
