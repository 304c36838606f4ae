"""The encoder hook: ``Encoder(config, obs_ndim)`` maps observations to features, whatever the torso.

Every algorithm builds its networks as an ``Encoder`` (chosen by ``EncoderConfig.kind``) with heads
for its action space on top (``vibe.networks.heads``), so a new torso plugs in here and nowhere else.
Integer and bool observations (uint8 images, MinAtar's bool planes) become float32 inside the jitted
step: uint8 is divided by 255, bool becomes 0/1; replay buffers and envs keep the compact dtype.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at
from vibe.networks import cnn, vit
from vibe.networks.config import EncoderConfig
from vibe.networks.mlp import MLP, Initializer


def to_float(obs: at.Array) -> at.Float[at.Array, "..."]:
    """float32 network input: uint8 in [0, 255] → [0, 1], bool → {0, 1}, floats unchanged (cast to float32)."""
    if obs.dtype == jnp.uint8:
        return obs.astype(jnp.float32) / 255.0
    return obs.astype(jnp.float32)


class Encoder(nn.Module):
    """``obs [..., *obs_shape] -> features [..., d]`` (any leading axes).

    Attributes:
        config: which torso and its sizes.
        obs_ndim: dimensions of one observation (1 for a flat vector, 3 for an ``[h, w, c]`` image);
            they are flattened for an mlp torso.
        kernel_init: initialiser of the dense layers' weights.
    """

    config: EncoderConfig
    obs_ndim: int = 1
    kernel_init: Initializer = nn.initializers.orthogonal(np.sqrt(2.0))

    @nn.compact
    def __call__(self, obs: at.Array) -> at.Float[at.Array, "... d"]:
        x = to_float(obs)
        batch_shape = x.shape[: x.ndim - self.obs_ndim]
        kind = self.config.kind
        if kind == "cnn":
            x = cnn.CNN(self.config.cnn, self.config.activation)(x.reshape((-1, *x.shape[len(batch_shape) :])))
        elif kind == "vit":
            x = vit.ViT(self.config.vit)(x.reshape((-1, *x.shape[len(batch_shape) :])))
        x = x.reshape((*batch_shape, -1))
        return MLP(self.config.hidden_sizes, self.config.activation, kernel_init=self.kernel_init)(x)


def check_observation(config: EncoderConfig, space: Any, env_id: str, *, flag: str = "--algo.encoder.kind") -> None:
    """Raises a one-line ValueError when the ``config.kind`` torso cannot read ``space``'s observations.

    An mlp reads any shape (images are flattened); cnn and vit need ``[h, w, c]`` images, and vit
    patches that tile them.
    """
    shape = tuple(space.shape)
    if config.kind == "mlp":
        return
    if len(shape) != 3:
        raise ValueError(
            f"env {env_id} observes {space!r} (shape {shape}), which the {config.kind} encoder cannot read: it "
            f"needs [height, width, channels] images; pass {flag} mlp"
        )
    if config.kind == "vit":
        p = config.vit.patch_size
        if shape[0] % p or shape[1] % p:
            raise ValueError(
                f"env {env_id} observes {shape[0]}x{shape[1]} images, which {p}x{p} patches do not tile; pass "
                f"--algo.encoder.vit.patch-size with a divisor of both, or {flag} cnn"
            )
