"""``CNN``: the convolutional torso behind ``EncoderConfig(kind="cnn")``.

``CNN(config, activation)(images [b, h, w, c] float32) -> [b, features]``: each layer of
``config`` is a ``Conv`` followed by the activation, and the last feature map is flattened.

Every ``Conv`` holds a normal ``kernel [k, k, c_in, c_out]`` and ``bias [c_out]`` (the names and
shapes of ``flax.linen.Conv``) whichever way it is computed, so checkpoints and parameter counts
do not depend on ``CNNConfig.conv_impl``. The ways:

- ``lax``: ``lax.conv_general_dilated`` (what ``flax.linen.Conv`` calls).
- ``patches``: ``lax.conv_general_dilated_patches`` then one matmul.
- ``slices``: the ``k·k`` shifted (strided) slices of the padded image, concatenated on channels,
  then one matmul (im2col by hand).
- ``auto`` (the default): ``slices`` for small convs, ``lax`` otherwise (``choose_impl``).

Why ``auto`` (XLA:CPU, jax 0.11.2, 2 cores shared with other work, so each rep times every variant
in turn; medians in ms, forward / forward + weight gradient, a 16-filter 3×3 SAME conv + relu):

    10×10×4 (MinAtar)     lax            patches        slices         patch matrix
    batch 64 (rollout)    0.59 / 0.87    1.08 / 1.47    0.43 / 0.81    0.9 MiB
    batch 256             1.49 / 2.41    3.66 / 4.41    1.15 / 2.05    3.5 MiB
    batch 512             4.97 / 5.29    10.2 / 11.4    3.00 / 6.54    7.0 MiB
    batch 1024 (update)   10.5 / 16.7    20.7 / 30.3    6.43 / 16.3    14 MiB
    batch 2048            12.9 / 19.9    33.2 / 44.6    28.7 / 43.3    28 MiB
    10×10×10, batch 64    2.86 / 2.03    8.48 / 8.66    1.49 / 1.68    2.2 MiB
    10×10×10, batch 256   3.32 / 5.96    12.8 / 16.5    3.93 / 7.44    8.8 MiB
    Nature stack, b 8     2.17 / 6.50    7.32 / 37.8    3.12 / 8.15    (84×84×4, three layers)
    Nature stack, b 128   29.2 / 107     88.0 / 415     81.5 / 172

Slices win while their patch matrix is small (lax.conv's fixed cost dominates) and lose once it
outgrows the cache (2048 MinAtar images, 28 MiB against a 32 MiB L3 here) or the kernel is large
(Nature-DQN's 8×8×4: the k·k copies of the image cost more than the conv). At 1024 the weight
gradient ties, and other runs of the same script gave lax the edge there (19.0 against 27.4 ms),
as reference/stack.md measured; so ``choose_impl`` draws the line at an 8 MiB patch matrix and a
contraction of 128, from the static shapes at trace time. Patches never won. PureJaxRL-size PPO
on Breakout-MinAtar ran at 5.1k steps/s through lax.conv and 19.9k through slices
(reference/stack.md), most of it in the rollout's small batches.
"""

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vibe.core import typing as at
from vibe.networks import config as config_lib
from vibe.networks.config import CNNConfig

Impl = Literal["lax", "patches", "slices"]
Padding = Literal["SAME", "VALID"]

# ``auto`` uses slices while the patch matrix [b·h_out·w_out, k·k·c_in] float32 is at most this big
# (the MinAtar 10×10×4 case up to batch ~580, 10×10×10 up to ~230) ...
SLICES_MAX_BYTES = 8 * 2**20
# ... and the contraction k·k·c_in at most this long (3×3 over ≤ 14 channels; Nature-DQN's 8×8×4 = 256 is not).
SLICES_MAX_CONTRACTION = 128

# NHWC images, HWIO kernels: flax's layout, so kernels are interchangeable with nn.Conv's.
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def choose_impl(batch: int, out_hw: tuple[int, int], kernel_size: int, in_channels: int) -> Impl:
    """The implementation ``auto`` picks for one layer, from static shapes (see the module docstring).

    ``batch`` is the batch the layer is traced with; under ``jax.vmap`` (seeds) it is the per-seed batch.
    """
    contraction = kernel_size * kernel_size * in_channels
    patch_bytes = batch * out_hw[0] * out_hw[1] * contraction * 4
    if contraction <= SLICES_MAX_CONTRACTION and patch_bytes <= SLICES_MAX_BYTES:
        return "slices"
    return "lax"


def _pads(x: jax.Array, kernel_size: int, stride: int, padding: Padding) -> list[tuple[int, int]]:
    """lax's own (low, high) padding of the two spatial dims, so every implementation pads alike."""
    return list(lax.padtype_to_pads(x.shape[1:3], (kernel_size, kernel_size), (stride, stride), padding))


def out_size(size: int, kernel_size: int, stride: int, padding: Padding) -> int:
    """Output side of a conv over ``size`` pixels: ``ceil(size / s)`` (SAME), ``floor((size - k) / s) + 1`` (VALID)."""
    if padding == "SAME":
        return -(-size // stride)
    return (size - kernel_size) // stride + 1


def conv_lax(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """``lax.conv_general_dilated``: exactly ``nn.Conv`` (without the bias)."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMENSION_NUMBERS)


def conv_patches(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """``lax.conv_general_dilated_patches`` (features ordered ``(c_in, kh, kw)``) times the reordered kernel."""
    k, _, c_in, c_out = kernel.shape
    patches = lax.conv_general_dilated_patches(
        x, (k, k), (stride, stride), padding, dimension_numbers=_DIMENSION_NUMBERS
    )
    return patches @ jnp.transpose(kernel, (2, 0, 1, 3)).reshape(c_in * k * k, c_out)


def conv_slices(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """The ``k·k`` strided slices of the padded image, concatenated as ``(kh, kw, c_in)``, times the kernel."""
    k, _, c_in, c_out = kernel.shape
    x = jnp.pad(x, [(0, 0), *_pads(x, k, stride, padding), (0, 0)])
    h_out = (x.shape[1] - k) // stride + 1
    w_out = (x.shape[2] - k) // stride + 1
    h_end, w_end = stride * (h_out - 1) + 1, stride * (w_out - 1) + 1
    cols = [x[:, i : i + h_end : stride, j : j + w_end : stride, :] for i in range(k) for j in range(k)]
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(k * k * c_in, c_out)


IMPLS: dict[str, Callable[[jax.Array, jax.Array, int, Padding], jax.Array]] = {
    "lax": conv_lax,
    "patches": conv_patches,
    "slices": conv_slices,
}


class Conv(nn.Module):
    """``x [b, h, w, c_in] -> [b, h_out, w_out, features]``, parameters as ``nn.Conv``'s.

    Attributes:
        features: output channels.
        kernel_size: square kernel side.
        stride: stride in both spatial dims.
        padding: SAME (output ``ceil(h / stride)``) or VALID.
        impl: one of ``IMPLS`` or ``auto`` (``choose_impl``).
        kernel_init: initialiser of the ``[k, k, c_in, features]`` kernel.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: Padding = "SAME"
    impl: str = "auto"
    kernel_init: Any = nn.initializers.orthogonal(np.sqrt(2.0))

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b h w c"]) -> at.Float[at.Array, "b h2 w2 f"]:
        k, c_in = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, c_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        impl = self.impl
        if impl == "auto":
            out_hw = (
                out_size(x.shape[1], k, self.stride, self.padding),
                out_size(x.shape[2], k, self.stride, self.padding),
            )
            impl = choose_impl(x.shape[0], out_hw, k, c_in)
        return IMPLS[impl](x, kernel, self.stride, self.padding) + bias


class CNN(nn.Module):
    """``images [b, h, w, c] -> [b, h_L · w_L · channels[-1]]``: conv layers as ``config`` lists them, each
    followed by the activation, then flattened.

    Takes float images; the ``Encoder`` turns uint8 / bool observations into floats before this.

    Attributes:
        config: channels, kernels, strides, padding and implementation of the layers.
        activation: a name in ``vibe.networks.config.ACTIVATIONS``.
        kernel_init: initialiser of every conv kernel (orthogonal, gain √2: CleanRL's Atari ``layer_init``).
    """

    config: CNNConfig
    activation: str = "relu"
    kernel_init: Any = nn.initializers.orthogonal(np.sqrt(2.0))

    def __post_init__(self) -> None:
        if self.activation not in config_lib.ACTIVATIONS:
            raise ValueError(f"CNN.activation={self.activation!r} is unknown; use one of {config_lib.ACTIVATIONS}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b h w c"]) -> at.Float[at.Array, "b f"]:
        act = getattr(nn, self.activation)
        c = self.config
        for i, (features, kernel, stride) in enumerate(zip(c.channels, c.kernel_sizes, c.strides, strict=True)):
            if (
                min(out_size(x.shape[1], kernel, stride, c.padding), out_size(x.shape[2], kernel, stride, c.padding))
                < 1
            ):
                raise ValueError(
                    f"CNNConfig layer {i} ({kernel}x{kernel} VALID conv) does not fit its {x.shape[1]}x{x.shape[2]} "
                    "input; use smaller kernel_sizes/strides, fewer layers, or padding SAME."
                )
            x = act(Conv(features, kernel, stride, c.padding, c.conv_impl, self.kernel_init)(x))
        return x.reshape((x.shape[0], -1))
