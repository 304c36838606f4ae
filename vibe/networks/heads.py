"""Action heads: how features become an action distribution, chosen once from the action space.

A head is a static description (a frozen dataclass, not a pytree) with:

- ``__call__(features)``: builds its layers inside the calling flax module's compact scope and returns
  the distribution's parameters (``HeadModule`` wraps it for ``setup``-style modules);
- ``distribution(out)``: the distrax distribution of those parameters;
- ``noise(key, batch_shape)`` and ``sample(out, noise)``: a sample drawn from noise made ahead of time,
  so a rollout can draw all its noise in one call before its scan (no PRNG inside the loop);
- ``mode(out)``: the greedy action.

``policy_head(space)`` picks ``Categorical`` for ``Discrete`` and ``Gaussian`` for a 1-D float ``Box``;
SAC uses ``TanhGaussian`` (bounded Box).
"""

import dataclasses
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at
from vibe.envs import spaces
from vibe.networks.mlp import Initializer

Output = Any  # logits [..., a], or (mean, log_std) each [..., act]


@dataclasses.dataclass(frozen=True)
class Categorical:
    """Discrete actions: logits from one dense layer (orthogonal init, small gain: near-uniform at start)."""

    num_actions: int
    init_scale: float = 0.01

    def __call__(self, features: at.Array) -> at.Float[at.Array, "... a"]:
        init = nn.initializers.orthogonal(self.init_scale)
        return nn.Dense(self.num_actions, kernel_init=init, bias_init=nn.initializers.zeros)(features)

    def distribution(self, logits: at.Array) -> distrax.Categorical:
        return distrax.Categorical(logits=logits)

    def noise(self, key: at.Key, batch_shape: tuple[int, ...]) -> at.Array:
        return jax.random.gumbel(key, (*batch_shape, self.num_actions))

    def sample(self, logits: at.Array, noise: at.Array) -> at.Int[at.Array, "..."]:
        """The Gumbel-max trick: ``argmax(logits + gumbel)``, as ``jax.random.categorical`` samples."""
        return jnp.argmax(logits + noise, axis=-1).astype(jnp.int32)

    def mode(self, logits: at.Array) -> at.Int[at.Array, "..."]:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)


class _LogStd(nn.Module):
    """A learned, state-independent log standard deviation vector."""

    size: int
    init_value: float

    @nn.compact
    def __call__(self) -> at.Float[at.Array, " act"]:
        return self.param("log_std", nn.initializers.constant(self.init_value), (self.size,))


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Continuous actions: a diagonal Gaussian whose mean is a dense layer of the features and whose
    log-std is one learned vector shared by all states (PureJaxRL / CleanRL's continuous PPO)."""

    action_dim: int
    init_log_std: float = 0.0
    init_scale: float = 0.01

    def __call__(self, features: at.Array) -> tuple[at.Array, at.Array]:
        init = nn.initializers.orthogonal(self.init_scale)
        mean = nn.Dense(self.action_dim, kernel_init=init, bias_init=nn.initializers.zeros)(features)
        return mean, jnp.broadcast_to(_LogStd(self.action_dim, self.init_log_std)(), mean.shape)

    def distribution(self, out: tuple[at.Array, at.Array]) -> distrax.MultivariateNormalDiag:
        mean, log_std = out
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))

    def noise(self, key: at.Key, batch_shape: tuple[int, ...]) -> at.Array:
        return jax.random.normal(key, (*batch_shape, self.action_dim))

    def sample(self, out: tuple[at.Array, at.Array], noise: at.Array) -> at.Array:
        """``mean + std * noise``: unclipped (the env clips; the log-probability is of this sample)."""
        mean, log_std = out
        return mean + jnp.exp(log_std) * noise

    def mode(self, out: tuple[at.Array, at.Array]) -> at.Array:
        return out[0]


# PyTorch's default Linear init (uniform with variance 1/(3 fan_in)), which the SAC baselines we compare
# against (SB3, CleanRL) train with.
TORCH_DEFAULT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class TanhGaussian:
    """Bounded continuous actions (SAC): N(mean, exp(log_std)) pushed through tanh, then scaled onto
    ``[low, high]`` (so Pendulum's ±2 torque is covered, not ±1). The log-density follows by change of
    variables (Haarnoja et al. 2018, appendix C):

        log pi(a|s) = log N(u; mu, sigma) - sum_i log(1 - tanh(u_i)^2) - sum_i log(half_i)
    """

    low: np.ndarray  # action lower bounds [act]
    high: np.ndarray  # action upper bounds [act]
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    kernel_init: Initializer = TORCH_DEFAULT_INIT

    @property
    def action_dim(self) -> int:
        return int(self.low.shape[0])

    def __call__(self, features: at.Array) -> tuple[at.Array, at.Array]:
        out = nn.Dense(2 * self.action_dim, kernel_init=self.kernel_init, bias_init=nn.initializers.zeros)(features)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)

    def distribution(self, out: tuple[at.Array, at.Array]) -> distrax.Transformed:
        """The event is the whole action vector (Block sums the per-feature log-determinants). Draw with
        ``sample_and_log_prob``: it never inverts tanh, which is unstable at the bounds."""
        mean, log_std = out
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        affine = distrax.ScalarAffine(shift=(high + low) / 2.0, scale=(high - low) / 2.0)
        bijector = distrax.Block(distrax.Chain([affine, distrax.Tanh()]), ndims=1)
        return distrax.Transformed(distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)), bijector)

    def sample_and_log_prob(self, out: tuple[at.Array, at.Array], key: at.Key) -> tuple[at.Array, at.Array]:
        return self.distribution(out).sample_and_log_prob(seed=key)

    def mode(self, out: tuple[at.Array, at.Array]) -> at.Array:
        """The scaled tanh of the Gaussian's mean."""
        return (self.high + self.low) / 2.0 + (self.high - self.low) / 2.0 * jnp.tanh(out[0])


Head = Categorical | Gaussian | TanhGaussian


class HeadModule(nn.Module):
    """A head as a flax submodule (for modules built in ``setup``)."""

    head: Head

    @nn.compact
    def __call__(self, features: at.Array) -> Output:
        return self.head(features)


def policy_head(space: spaces.Discrete | spaces.Box, *, init_log_std: float = 0.0, owner: str = "PPO") -> Head:
    """``Categorical`` for ``Discrete``, ``Gaussian`` for a 1-D float ``Box``; anything else raises."""
    if isinstance(space, spaces.Discrete):
        return Categorical(space.n)
    if isinstance(space, spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        return Gaussian(space.shape[0], init_log_std)
    raise ValueError(
        f"{owner} supports Discrete and 1-D float Box action spaces; the env has {space!r}. "
        "Flatten the action space with a wrapper first."
    )
