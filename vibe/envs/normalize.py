"""Observation normalisation with running statistics that live in the env state.

``NormalizeObservation`` wraps a *vectorised* env (``wrappers.vectorize``): all ``n`` envs
share one ``RunningMeanStd`` (mean, var, count; float32, the shape of one
observation), updated on every ``reset``/``step`` with the batch of new raw
observations. Because the statistics are part of the env state, a trainer that
keeps its env state in its run state checkpoints and resumes them for free,
and a ``jax.vmap`` over seeds gives each seed its own statistics.

Order: the statistics are updated with the new batch first, then that batch is
normalised with the updated statistics (gymnasium's ``NormalizeObservation``
does the same). ``info["final_obs"]`` (the true last observation of an episode
that ended at this step, from ``AutoReset``) is normalised with the same
statistics as ``obs``, so a critic bootstrapping a truncated episode sees it on
the scale of its inputs. The statistics count the observations the policy acts
on (``obs``, which after an auto-reset is the next episode's first one); final
observations are normalised but not counted, so every observation is counted
once.

Unlike PureJaxRL's ``NormalizeVecObservation``, the final observation is
normalised too, and the count is a float32 that starts at ``EPSILON_COUNT``
like gymnasium's (a prior of mean 0, variance 1 with weight 1e-4).
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from vibe.core import typing as at
from vibe.core.types import TimeStep
from vibe.envs import spaces
from vibe.envs.env import Env

# Initial count (gymnasium's RunningMeanStd epsilon): keeps the first merge finite.
EPSILON_COUNT = 1e-4
# Added to the variance before the square root (gymnasium's value): a constant feature stays finite.
EPSILON_VAR = 1e-8
# Normalised observations are clipped to [-clip, clip] (gymnasium's and SB3's default).
DEFAULT_CLIP = 10.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RunningMeanStd:
    """Running mean and (population) variance of a stream of observations.

    Attributes:
        mean: float32, the shape of one observation.
        var: float32, the shape of one observation.
        count: float32 scalar: observations seen plus ``EPSILON_COUNT``. Past
            ~2**24 the float32 count rounds, which only changes the merge weight
            of a new batch by a relative ~1e-7.
    """

    mean: at.Float[at.Array, "*obs"]
    var: at.Float[at.Array, "*obs"]
    count: at.Float[at.Array, ""]


def init_stats(shape: tuple[int, ...]) -> RunningMeanStd:
    """Prior statistics: mean 0, variance 1, count ``EPSILON_COUNT``."""
    return RunningMeanStd(
        mean=jnp.zeros(shape, jnp.float32),
        var=jnp.ones(shape, jnp.float32),
        count=jnp.full((), EPSILON_COUNT, jnp.float32),
    )


def update_stats(stats: RunningMeanStd, batch: at.Num[at.Array, "*b obs"]) -> RunningMeanStd:
    """Merges a batch into ``stats`` with the parallel algorithm of Chan et al. (1979).

    With ``delta = mean_B - mean_A`` and ``N = n_A + n_B``:
    ``mean = mean_A + delta n_B / N`` and
    ``var = (n_A var_A + n_B var_B + delta^2 n_A n_B / N) / N``,
    where ``var_B`` is the batch's population variance (ddof 0).

    Args:
        stats: the statistics so far.
        batch: observations with any leading axes (``[n, obs]``, ``[t, n, obs]``);
            the trailing axes must be the shape of ``stats.mean``.
    """
    batch = jnp.asarray(batch, jnp.float32)
    axes = tuple(range(batch.ndim - stats.mean.ndim))
    batch_count = jnp.float32(math.prod(batch.shape[: len(axes)]))
    batch_mean = batch.mean(axis=axes)
    batch_var = batch.var(axis=axes)
    total = stats.count + batch_count
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * (batch_count / total)
    m2 = stats.var * stats.count + batch_var * batch_count + jnp.square(delta) * (stats.count * batch_count / total)
    return RunningMeanStd(mean=mean, var=m2 / total, count=total)


def normalize(
    stats: RunningMeanStd, obs: at.Num[at.Array, "*b obs"], clip: float = DEFAULT_CLIP
) -> at.Float[at.Array, "*b obs"]:
    """``clip((obs - mean) / sqrt(var + EPSILON_VAR), -clip, clip)`` in float32, any leading axes."""
    scaled = (jnp.asarray(obs, jnp.float32) - stats.mean) / jnp.sqrt(stats.var + EPSILON_VAR)
    return jnp.clip(scaled, -clip, clip)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NormalizeObservationState:
    """State of ``NormalizeObservation``: the inner (vectorised) env state and the shared statistics."""

    env_state: Any
    stats: RunningMeanStd


@dataclasses.dataclass(frozen=True)
class NormalizeObservation:
    """Normalises the observations of a vectorised env with running statistics shared by its envs.

    Same interface as the env it wraps (``reset``, ``step``, spaces); observations
    come out float32 in ``[-clip, clip]``. To act
    on raw observations outside the training env (evaluation, serving), apply
    ``normalize(state.stats, obs, clip)`` (or ``self.normalize``) with the
    statistics of a trained state; they are frozen there.

    Attributes:
        env: the vectorised env, e.g. ``wrappers.vectorize(wrappers.for_training(env), n)``.
        clip: bound of the normalised observations.
    """

    env: Env
    clip: float = DEFAULT_CLIP

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ValueError(f"NormalizeObservation.clip must be > 0, got {self.clip!r}; {DEFAULT_CLIP} is usual.")

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def normalize(self, state: NormalizeObservationState, obs: at.Array) -> at.Float[at.Array, "..."]:
        """``obs`` (any leading axes) normalised with ``state``'s statistics, which are not updated."""
        return normalize(state.stats, obs, self.clip)

    def _observe(self, stats: RunningMeanStd, timestep: TimeStep) -> tuple[RunningMeanStd, TimeStep]:
        """Update first with the raw ``obs``, then normalise ``obs`` and ``info["final_obs"]`` alike."""
        stats = update_stats(stats, timestep.obs)
        info = dict(timestep.info)
        if "final_obs" in info:
            info["final_obs"] = normalize(stats, info["final_obs"], self.clip)
        return stats, dataclasses.replace(timestep, obs=normalize(stats, timestep.obs, self.clip), info=info)

    def reset(self, key: at.Key, params: Any) -> tuple[NormalizeObservationState, TimeStep]:
        """Resets all envs and counts their first observations."""
        env_state, timestep = self.env.reset(key, params)
        stats, timestep = self._observe(init_stats(self.observation_shape(params)), timestep)
        return NormalizeObservationState(env_state, stats), timestep

    def step(
        self, key: at.Key, state: NormalizeObservationState, action: at.Array, params: Any
    ) -> tuple[NormalizeObservationState, TimeStep]:
        """Steps all envs; see the module docstring for the order."""
        env_state, timestep = self.env.step(key, state.env_state, action, params)
        stats, timestep = self._observe(state.stats, timestep)
        return NormalizeObservationState(env_state, stats), timestep

    def observation_shape(self, params: Any) -> tuple[int, ...]:
        return tuple(self.env.observation_space(params).shape)

    def observation_space(self, params: Any) -> spaces.Box:
        """Space of one normalised observation: float32 in ``[-clip, clip]``."""
        return spaces.Box(-self.clip, self.clip, self.observation_shape(params), jnp.float32)

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        return self.env.action_space(params)
