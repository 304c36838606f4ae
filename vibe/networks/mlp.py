"""``MLP``: the dense torso of every network, and the activation functions configs name.

Defaults follow PureJaxRL / CleanRL's PPO (Andrychowicz et al. 2021, "What
matters in on-policy RL", decision C57): orthogonal weights with gain sqrt(2)
in hidden layers, zero biases.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from vibe.core import typing as at
from vibe.networks import config

# The function of each activation name in vibe.networks.config.ACTIVATIONS (the JAX-free list configs check).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {name: getattr(nn, name) for name in config.ACTIVATIONS}

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
