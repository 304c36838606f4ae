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
- ``auto`` (the default): ``slices`` on CPU, ``lax`` on other backends (``choose_impl``; GPU and
  TPU are unmeasured here, and lax is their native conv).

Why (XLA:CPU, jax 0.11.2, 2 cores shared with other work, load 5-14, so each rep times every
variant in turn; medians). What decides it: **lax.conv inside a ``lax.scan`` is 4-40× slower per
call than the same conv called alone** (slices are not), and vibe's hot path is always inside scans (the rollout scans
env steps, ``train_chunk`` scans updates, PPO's update scans minibatches). Forward + weight
gradient of conv(16 3×3 SAME) + relu + Dense(64) on 10×10×4 MinAtar images:

    batch, where            lax          slices
    64, one call            3.1 ms       4.4 ms
    64, 8 in a scan         87.9 ms      24.4 ms
    1024, one call          92.9 ms      139 ms
    1024, 8 in a scan       3904 ms      711 ms
    2048, one call          273 ms       232 ms
    2048, 8 in a scan       25128 ms     1362 ms

The Nature-DQN stack (84×84×4, three layers), batch 8: one call lax 8.9 ms, slices 28.6, patches
94.5; 4 in a scan lax 1485 ms, slices 80.5, patches 201. End to end, PPO on Breakout-MinAtar with
PureJaxRL's MinAtar settings (64 envs × 128 steps, 8 minibatches × 4 epochs, this torso + Dense 64),
updates interleaved in one process: slices 1725 steps/s, patches 1030, lax 437, and slices for the
rollout with lax for the update 340 (reference/stack.md: 19.9k through slices, 5.1k through
lax). Called alone (no scan) the two trade places with batch and load (the conv without the
Dense, forward / +grad: batch 64, slices 0.43 / 0.81 ms against lax 0.59 / 0.87; batch 2048,
28.7 / 43.3 against 12.9 / 19.9): the measurement that misleads, since vibe runs no conv outside a
scan.

When the kernel equals the stride (a ViT-style stem: non-overlapping patches), slices is one
space-to-depth reshape and transpose instead of ``k·k`` strided copies and a concatenation: the same
patch matrix, so the same numbers. A 4×4 stride-4 conv + relu + Dense(64) on 512 grayscale 32×64×4
frames inside a scan: forward 8.1 → 3.0 ms, forward + weight gradient 15.4 → 11.5 ms.

Slices materialise the ``k·k`` shifted copies (the patch matrix ``[b·h_out·w_out, k·k·c_in]``):
0.9 MiB for 64 MinAtar images, 420 MiB for Nature's first layer at batch 1024; above
``SLICES_MAX_BYTES`` auto falls back to lax rather than risk running out of memory.
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

# Above this patch matrix (float32 bytes of one layer's k·k shifted copies) auto uses lax on CPU too.
SLICES_MAX_BYTES = 2**30

# NHWC images, HWIO kernels: flax's layout, so kernels are interchangeable with nn.Conv's.
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def choose_impl(batch: int, out_hw: tuple[int, int], kernel_size: int, in_channels: int, backend: str) -> Impl:
    """The implementation ``auto`` picks for one layer from static shapes and the backend (module docstring).

    ``batch`` is the batch the layer is traced with (under ``jax.vmap`` over seeds, the per-seed batch).
    """
    patch_bytes = batch * out_hw[0] * out_hw[1] * kernel_size * kernel_size * in_channels * 4
    if backend == "cpu" and patch_bytes <= SLICES_MAX_BYTES:
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
    if k == stride:  # non-overlapping patches: one space-to-depth transpose instead of k·k strided copies
        b = x.shape[0]
        x = x[:, : k * h_out, : k * w_out].reshape(b, h_out, k, w_out, k, c_in)
        patches = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h_out, w_out, k * k * c_in)
    else:
        cols = [x[:, i : i + h_end : stride, j : j + w_end : stride, :] for i in range(k) for j in range(k)]
        patches = jnp.concatenate(cols, axis=-1)
    return patches @ kernel.reshape(k * k * c_in, c_out)


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
            impl = choose_impl(x.shape[0], out_hw, k, c_in, jax.default_backend())
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
