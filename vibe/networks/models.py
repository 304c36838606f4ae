"""The networks the algorithms train, each an ``Encoder`` torso with heads for the action space.

Initialisation of PPO's actor-critic follows PureJaxRL / CleanRL (Andrychowicz et al. 2021, decision
C57): orthogonal weights with gain sqrt(2) in hidden layers, 0.01 on the policy head, 1.0 on the value
head, zero biases. SAC's networks use PyTorch's default init, as the baselines it is compared with.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vibe.core import typing as at
from vibe.networks import heads
from vibe.networks.config import EncoderConfig
from vibe.networks.encoder import Encoder
from vibe.networks.mlp import MLP


class ActorCritic(nn.Module):
    """Actor and critic torsos over the same observation, a policy head and a value head.

    The torsos are separate (PureJaxRL's actor-critic) unless ``shared``: then one torso feeds both
    heads (CleanRL's Atari PPO and SB3's CnnPolicy), which halves the cost of a conv torso's update.
    ``policy`` and ``value`` can be applied alone (``method="policy"``), so a rollout runs only the
    actor and the critic runs once, batched, after it.
    """

    encoder: EncoderConfig
    head: heads.Head
    obs_ndim: int = 1
    shared: bool = False

    def setup(self) -> None:
        self.actor = Encoder(self.encoder, self.obs_ndim)
        self.policy_head = heads.HeadModule(self.head)
        self.critic = self.actor if self.shared else Encoder(self.encoder, self.obs_ndim)
        init = nn.initializers.orthogonal(1.0)
        self.value_head = nn.Dense(1, kernel_init=init, bias_init=nn.initializers.zeros)

    def policy(self, obs: at.Array) -> heads.Output:
        """The policy head's output (logits, or ``(mean, log_std)``)."""
        return self.policy_head(self.actor(obs))

    def value(self, obs: at.Array) -> at.Float[at.Array, "..."]:
        """State value V(obs)."""
        return jnp.squeeze(self.value_head(self.critic(obs)), -1)

    def __call__(self, obs: at.Array) -> tuple[heads.Output, at.Array]:
        if self.shared:  # the torso once for both heads
            features = self.actor(obs)
            return self.policy_head(features), jnp.squeeze(self.value_head(features), -1)
        return self.policy(obs), self.value(obs)


class QNetwork(nn.Module):
    """``obs -> Q(obs, a)`` for every discrete action: a torso and a linear head (orthogonal, gain 1)."""

    encoder: EncoderConfig
    num_actions: int
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: at.Array) -> at.Float[at.Array, "... a"]:
        features = Encoder(self.encoder, self.obs_ndim)(obs)
        init = nn.initializers.orthogonal(1.0)
        return nn.Dense(self.num_actions, kernel_init=init, bias_init=nn.initializers.zeros)(features)


class Actor(nn.Module):
    """``obs -> (mean, log_std)`` of a tanh-Gaussian policy head (SAC)."""

    encoder: EncoderConfig
    head: heads.TanhGaussian

    @nn.compact
    def __call__(self, obs: at.Float[at.Array, "... obs"]) -> tuple[at.Array, at.Array]:
        return self.head(Encoder(self.encoder, 1, heads.TORCH_DEFAULT_INIT)(obs))


def twin(module: type[nn.Module]) -> Any:
    """``module`` twice, with independent parameters stacked on a leading axis of 2 and one batched call
    (outputs ``[2, ...]``): one batched matmul per layer instead of two small ones (faster on CPU and GPU)."""
    return nn.vmap(
        module, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0, axis_size=2
    )


class TwinCritic(nn.Module):
    """Two independent Q MLPs, ``(obs, action) -> q [2, ...]``.

    One ``nn.vmap`` over a stacked parameter axis: both critics run as one batched matmul per layer
    instead of two small ones (faster on CPU and GPU). Flat observations only (an mlp torso).
    """

    encoder: EncoderConfig

    @nn.compact
    def __call__(self, obs: at.Float[at.Array, "... obs"], action: at.Float[at.Array, "... act"]) -> at.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        init = heads.TORCH_DEFAULT_INIT
        q = twin(MLP)(self.encoder.hidden_sizes, self.encoder.activation, 1, init, init)(x)
        return jnp.squeeze(q, -1)
