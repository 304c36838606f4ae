"""SAC's networks and its tanh-squashed, bound-scaled Gaussian policy.

The actor outputs the mean and log-std of a diagonal Gaussian over a pre-squash
action ``u``; the env receives ``a = mid + half * tanh(u)`` with
``mid = (high + low) / 2`` and ``half = (high - low) / 2``, so the policy covers
exactly the env's ``Box`` (Pendulum's torque is ±2, not ±1). The log-density
of ``a`` follows by change of variables (Haarnoja et al. 2018, appendix C):

    log pi(a|s) = log N(u; mu, sigma) - sum_i log(1 - tanh(u_i)^2) - sum_i log(half_i)
"""

from collections.abc import Sequence
from typing import cast

import distrax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at
from vibe.networks.mlp import MLP

# PyTorch's default Linear init (uniform with variance 1/(3 fan_in)), which the
# SAC baselines we compare against (SB3, CleanRL) train with.
TORCH_DEFAULT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class Actor(nn.Module):
    """``obs -> (mean, log_std)`` of the pre-tanh Gaussian, log-std clipped to ``[log_std_min, log_std_max]``.

    Attributes:
        action_dim: action features ``act``.
        hidden_sizes: widths of the hidden layers.
        activation: a key of ``vibe.networks.mlp.ACTIVATIONS``.
        log_std_min: lower clip of the log standard deviation.
        log_std_max: upper clip of the log standard deviation.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: at.Float[at.Array, "... obs"]) -> tuple[at.Array, at.Array]:
        out = MLP(self.hidden_sizes, self.activation, 2 * self.action_dim, TORCH_DEFAULT_INIT, TORCH_DEFAULT_INIT)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


class TwinCritic(nn.Module):
    """Two independent Q MLPs, ``(obs, action) -> q [2, ...]``.

    One ``nn.vmap`` over a stacked parameter axis: both critics run as one
    batched matmul per layer instead of two small ones (faster on CPU and GPU).
    """

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: at.Float[at.Array, "... obs"], action: at.Float[at.Array, "... act"]) -> at.Array:
        twin = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=2,
        )
        x = jnp.concatenate([obs, action], axis=-1)
        q = twin(self.hidden_sizes, self.activation, 1, TORCH_DEFAULT_INIT, TORCH_DEFAULT_INIT)(x)
        return jnp.squeeze(q, -1)


def scale_action(squashed: at.Float[at.Array, "... act"], low: np.ndarray, high: np.ndarray) -> at.Array:
    """Maps ``[-1, 1]`` affinely onto ``[low, high]``: -1 -> low, 0 -> mid, 1 -> high."""
    return (high + low) / 2.0 + (high - low) / 2.0 * squashed


def action_distribution(
    mean: at.Float[at.Array, "... act"], log_std: at.Float[at.Array, "... act"], low: np.ndarray, high: np.ndarray
) -> distrax.Transformed:
    """The policy: N(mean, exp(log_std)) pushed through tanh, then scaled onto ``[low, high]``.

    The event is the whole action vector, so ``log_prob`` is the joint density
    (the Block bijector sums the per-feature log-determinants). Draw with
    ``sample_and_log_prob``: it takes the log-determinant at the pre-tanh sample
    and never inverts tanh, which is unstable at the bounds.
    """
    affine = distrax.ScalarAffine(shift=jnp.asarray((high + low) / 2.0), scale=jnp.asarray((high - low) / 2.0))
    bijector = distrax.Block(distrax.Chain([affine, distrax.Tanh()]), ndims=1)
    return distrax.Transformed(distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)), bijector)


def sample_action(
    actor: Actor, params: at.PyTree, obs: at.Float[at.Array, "b obs"], key: at.Key, low: np.ndarray, high: np.ndarray
) -> tuple[at.Float[at.Array, "b act"], at.Float[at.Array, " b"]]:
    """A policy sample in the env's bounds and its log-density ``log pi(a|s)``."""
    mean, log_std = cast(tuple[at.Array, at.Array], actor.apply(params, obs))
    action, log_prob = action_distribution(mean, log_std, low, high).sample_and_log_prob(seed=key)
    return action, log_prob


def greedy_action(
    actor: Actor, params: at.PyTree, obs: at.Float[at.Array, "b obs"], low: np.ndarray, high: np.ndarray
) -> at.Float[at.Array, "b act"]:
    """The deterministic action: the scaled tanh of the Gaussian's mean."""
    mean, _ = cast(tuple[at.Array, at.Array], actor.apply(params, obs))
    return scale_action(jnp.tanh(mean), low, high)


def critic_values(
    critic: TwinCritic, params: at.PyTree, obs: at.Float[at.Array, "b obs"], action: at.Float[at.Array, "b act"]
) -> at.Float[at.Array, "2 b"]:
    """Both critics' Q(obs, action), stacked on a leading axis of 2."""
    return cast(at.Array, critic.apply(params, obs, action))
