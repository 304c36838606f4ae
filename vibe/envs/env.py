"""The ``Env`` protocol: a functional, jit- and vmap-able environment.

An env object holds only static structure (which dynamics, which wrappers);
everything that changes lives in ``state`` and everything configurable in
``params``. Shapes below are for one environment; ``VecEnv`` (wrappers.py)
vmaps over ``n`` of them.
"""

from typing import Any, Protocol

from vibe.core import typing as at
from vibe.core.types import TimeStep
from vibe.envs import spaces


class Env(Protocol):
    """A single environment with explicit state and params.

    ``reset`` and ``step`` are pure functions of their arguments, so they can be
    jitted, vmapped over keys/states, and scanned over time. ``step`` must not
    auto-reset unless the env says so (``AutoReset`` in wrappers.py does).
    """

    @property
    def default_params(self) -> Any:
        """The env's parameters (a pytree) with their default values."""
        ...

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        """Starts an episode: ``(state, TimeStep(obs, 0, False, False, info))``."""
        ...

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        """Applies ``action``: ``(next_state, TimeStep(next_obs, reward, terminated, truncated, info))``."""
        ...

    def observation_space(self, params: Any) -> spaces.Space:
        """Space of one observation (a ``Box``, an ``Image``...), from concrete (not traced) params."""
        ...

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        """Space of one action, from concrete (not traced) params."""
        ...
