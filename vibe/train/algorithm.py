"""The seam between the runner and an algorithm.

An algorithm is pure: its whole run state is one pytree of arrays (parameters,
optimizer state, environment states and observations, RNG key, counters), so
the runner can jit, donate, checkpoint and shard it without knowing what is
inside.
"""

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax

from vibe.envs.env import Env

State = Any
Metrics = Mapping[str, jax.Array]
# (obs [n, ...], key) -> actions [n, ...]
PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]


class Algorithm(Protocol):
    """What the runner needs from an algorithm bound to its config and env."""

    @property
    def name(self) -> str:
        """Short name for log lines, e.g. "ppo"."""
        ...

    @property
    def env(self) -> Env:
        """The plain environment (no auto-reset): evaluation runs on it."""
        ...

    @property
    def env_params(self) -> Any: ...

    @property
    def num_updates(self) -> int:
        """train_step calls in a full run."""
        ...

    @property
    def steps_per_update(self) -> int:
        """Environment steps taken by one train_step (all envs together)."""
        ...

    def init(self, key: jax.Array) -> State:
        """The initial run state."""
        ...

    def train_step(self, state: State) -> tuple[State, Metrics]:
        """One update. Metrics are scalars that the runner sums over a chunk: keys
        `episode/<x>_sum` are divided by `episode/count`, all others by the
        number of updates."""
        ...

    def greedy_policy(self, state: State) -> PolicyFn:
        """The deterministic policy of the current parameters, for evaluation."""
        ...
