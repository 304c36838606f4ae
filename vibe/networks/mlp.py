"""Multi-layer perceptrons: ``MLP`` and PPO's actor-critics, ``ActorCritic`` (discrete) and ``GaussianActorCritic``.

Initialisation follows PureJaxRL / CleanRL's PPO (Andrychowicz et al. 2021,
"What matters in on-policy RL", decision C57): orthogonal weights with gain
sqrt(2) in hidden layers, 0.01 on the policy head (near-uniform initial
policy, or Gaussian means near 0), 1.0 on the value head, zero biases.
Both actor-critics have the methods ``policy``, ``value`` and ``__call__``
(both at once), so PPO drives either through ``method="policy"``.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at

# Names a config may use for ``activation``; PPOConfig keeps the same tuple
# (it cannot import this module: configs import no JAX), a test checks they agree.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}

Initializer = Callable[..., Any]


class MLP(nn.Module):
    """``x -> act(Dense(h_1)) -> ... -> act(Dense(h_k)) [-> Dense(out_dim)]``.

    Attributes:
        hidden_sizes: widths of the hidden layers (may be empty).
        activation: a key of ``ACTIVATIONS``.
        out_dim: width of the linear output layer; None ends with the last hidden layer.
        kernel_init: initialiser of the hidden layers' weights.
        head_init: initialiser of the output layer's weights.
    """

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    out_dim: int | None = None
    kernel_init: Initializer = nn.initializers.orthogonal(np.sqrt(2.0))
    head_init: Initializer = nn.initializers.orthogonal(1.0)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLP.activation={self.activation!r} is unknown; use one of {sorted(ACTIVATIONS)}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "... d"]) -> at.Float[at.Array, "... out"]:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(nn.Dense(size, kernel_init=self.kernel_init, bias_init=nn.initializers.zeros)(x))
        if self.out_dim is not None:
            x = nn.Dense(self.out_dim, kernel_init=self.head_init, bias_init=nn.initializers.zeros)(x)
        return x


class ActorCritic(nn.Module):
    """Separate policy and value MLPs over the same flat observation.

    ``logits`` and ``value`` can be applied alone (``method=ActorCritic.logits``)
    so a rollout runs only the policy and the critic runs once, batched, after it.

    Attributes:
        action_dim: number of discrete actions ``a``.
        hidden_sizes: widths of the hidden layers of both MLPs.
        activation: a key of ``ACTIVATIONS``.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    def setup(self) -> None:
        self.policy_mlp = MLP(
            self.hidden_sizes, self.activation, self.action_dim, head_init=nn.initializers.orthogonal(0.01)
        )
        self.value_mlp = MLP(self.hidden_sizes, self.activation, 1, head_init=nn.initializers.orthogonal(1.0))

    def logits(self, obs: at.Float[at.Array, "... obs"]) -> at.Float[at.Array, "... a"]:
        """Unnormalised log-probabilities of the actions."""
        return self.policy_mlp(obs)

    def policy(self, obs: at.Float[at.Array, "... obs"]) -> at.Float[at.Array, "... a"]:
        """The policy's parameters: the logits (the name ``GaussianActorCritic`` shares)."""
        return self.logits(obs)

    def value(self, obs: at.Float[at.Array, "... obs"]) -> at.Float[at.Array, "..."]:
        """State value V(obs)."""
        return jnp.squeeze(self.value_mlp(obs), -1)

    def __call__(
        self, obs: at.Float[at.Array, "... obs"]
    ) -> tuple[at.Float[at.Array, "... a"], at.Float[at.Array, "..."]]:
        return self.logits(obs), self.value(obs)


class GaussianActorCritic(nn.Module):
    """Actor-critic for continuous actions: a diagonal Gaussian policy and a value MLP.

    The policy MLP outputs the mean; the log standard deviation is one learned
    vector shared by all states (PureJaxRL / CleanRL's continuous PPO), so
    exploration shrinks as training lowers it rather than per state.

    Attributes:
        action_dim: number of action features ``act``.
        hidden_sizes: widths of the hidden layers of both MLPs.
        activation: a key of ``ACTIVATIONS``.
        init_log_std: initial value of every entry of the log-std vector.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0

    def setup(self) -> None:
        self.policy_mlp = MLP(
            self.hidden_sizes, self.activation, self.action_dim, head_init=nn.initializers.orthogonal(0.01)
        )
        self.value_mlp = MLP(self.hidden_sizes, self.activation, 1, head_init=nn.initializers.orthogonal(1.0))
        self.log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))

    def policy(
        self, obs: at.Float[at.Array, "... obs"]
    ) -> tuple[at.Float[at.Array, "... act"], at.Float[at.Array, "... act"]]:
        """``(mean, log_std)`` of the action distribution; ``log_std`` is broadcast to the mean's shape."""
        mean = self.policy_mlp(obs)
        return mean, jnp.broadcast_to(self.log_std, mean.shape)

    def value(self, obs: at.Float[at.Array, "... obs"]) -> at.Float[at.Array, "..."]:
        """State value V(obs)."""
        return jnp.squeeze(self.value_mlp(obs), -1)

    def __call__(
        self, obs: at.Float[at.Array, "... obs"]
    ) -> tuple[tuple[at.Float[at.Array, "... act"], at.Float[at.Array, "... act"]], at.Float[at.Array, "..."]]:
        return self.policy(obs), self.value(obs)
