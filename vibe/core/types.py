"""Records shared by environments and algorithms: ``TimeStep`` and ``Transition``.

Both are frozen dataclasses registered as pytrees with
``jax.tree_util.register_dataclass`` (not ``flax.struct``: ``vibe.core`` must
not import flax), so they pass through ``jit``, ``vmap`` and ``scan``.
"""

import dataclasses
from typing import Any

import jax

from vibe.core import typing as at


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TimeStep:
    """What an environment returns from ``reset`` and ``step``.

    Shapes are per environment; a vmapped env adds a leading ``n`` axis.

    Attributes:
        obs: observation after the step (after an auto-reset: the first
            observation of the next episode; the true final observation is then
            in ``info["final_obs"]``).
        reward: float32 scalar reward of the transition (0 on reset).
        terminated: the episode reached a terminal state of the MDP; the value of
            the next state is 0 and must not be bootstrapped.
        truncated: the episode was cut by a time limit; the value of the next
            state is not 0 and must be bootstrapped.
        info: dict of extra arrays, the same keys on ``reset`` and ``step``.
    """

    obs: at.PyTree
    reward: at.Float[at.Array, ""]
    terminated: at.Bool[at.Array, ""]
    truncated: at.Bool[at.Array, ""]
    info: dict[str, Any]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Transition:
    """One step of experience; in a rollout every field gets ``[t, n]`` in front.

    Attributes:
        obs: observation the action was taken in.
        action: action taken (int32 for discrete actions).
        reward: reward received.
        terminated: the step ended the episode in a terminal state (no bootstrap).
        truncated: the step ended the episode at a time limit (bootstrap).
        next_obs: the true next observation (the final observation of the episode
            when it ended, not the observation after an auto-reset).
        log_prob: log-probability of ``action`` under the behaviour policy.
        value: critic estimate V(obs) under the behaviour parameters.
    """

    obs: at.PyTree
    action: at.Array
    reward: at.Float[at.Array, "..."]
    terminated: at.Bool[at.Array, "..."]
    truncated: at.Bool[at.Array, "..."]
    next_obs: at.PyTree
    log_prob: at.Float[at.Array, "..."]
    value: at.Float[at.Array, "..."]
