"""Pure image ops on ``[..., h, w, c]`` arrays: ``resize_with_pad``, ``grayscale``, ``invert``, ``to_signed_unit``.

All take jnp or numpy arrays with any leading (batch) axes and return jnp arrays
of static shapes, so they jit, vmap and run inside an env step. The env
wrappers built on them live in image_wrappers.py.

Dimension names: ``h, w`` the input height and width, ``H, W`` the target ones,
``c`` channels.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vibe.core import typing as at

# ITU-R BT.601 luma weights (Y' = 0.299 R' + 0.587 G' + 0.114 B'), the ones OpenCV's
# RGB2GRAY, PIL's convert("L") and the Atari preprocessing of DQN use.
BT601_LUMA = (0.299, 0.587, 0.114)


def _check_dtype(dtype: Any, op: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype != np.uint8 and dtype.kind != "f":
        raise ValueError(f"{op}: unsupported image dtype {dtype.name}; pass uint8 in [0, 255] or floats in [-1, 1].")
    return dtype


def resized_shape(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """``(h', w')`` of the content inside a ``target_height x target_width`` frame, aspect ratio kept.

    openpi's rule: ``ratio = max(w / W, h / H)`` and sizes ``int(dim / ratio)``,
    computed here in integers so the side that fits exactly is never cut to
    ``dim - 1`` by float rounding (``int(256 / (256 / 60))`` can be 59).
    """
    if height * target_width >= width * target_height:  # height-limited: h' = H
        return target_height, max(1, width * target_height // height)
    return max(1, height * target_width // width), target_width


def resize_with_pad(images: at.ArrayLike, height: int, width: int, *, pad_value: float | int | None = None) -> at.Array:
    """Resizes ``[..., h, w, c]`` images to ``[..., height, width, c]``, keeping the aspect ratio and padding.

    openpi's ``resize_with_pad`` (reference/openpi.md §5): bilinear resize (with
    antialiasing when shrinking, as ``jax.image.resize`` and PIL do) to
    ``resized_shape(h, w, height, width)``, then padding split by ``divmod`` so
    the extra pixel goes to the bottom/right. uint8 results are rounded and
    clipped to ``[0, 255]``; float results are clipped to ``[-1, 1]`` (the range
    of vibe's float images). uint8 images already ``height x width`` come back
    unchanged (floats are still clipped).

    Args:
        images: uint8 or float array ``[..., h, w, c]`` (jnp or numpy).
        height, width: target size (static Python ints).
        pad_value: value of the padding; default 0 for uint8 (black), -1.0 for floats.

    Returns:
        ``[..., height, width, c]`` array of the input dtype.
    """
    images = jnp.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"resize_with_pad: images must be [..., h, w, c], got shape {images.shape}.")
    if height < 1 or width < 1:
        raise ValueError(f"resize_with_pad: height and width must be >= 1, got {height} x {width}.")
    dtype = _check_dtype(images.dtype, "resize_with_pad")
    *batch, cur_height, cur_width, _ = images.shape
    if (cur_height, cur_width) == (height, width):
        return images if dtype == np.uint8 else jnp.clip(images, -1.0, 1.0)
    new_height, new_width = resized_shape(cur_height, cur_width, height, width)
    resized = _resize_axis(images.astype(jnp.float32), -3, new_height)
    resized = _resize_axis(resized, -2, new_width)
    if dtype == np.uint8:
        resized = jnp.clip(jnp.round(resized), 0, 255)
        pad = 0 if pad_value is None else pad_value
    else:
        resized = jnp.clip(resized, -1.0, 1.0)
        pad = -1.0 if pad_value is None else pad_value
    top, extra_h = divmod(height - new_height, 2)
    left, extra_w = divmod(width - new_width, 2)
    widths = [(0, 0)] * len(batch) + [(top, top + extra_h), (left, left + extra_w), (0, 0)]
    return jnp.pad(resized.astype(dtype), widths, constant_values=jnp.asarray(pad, dtype))


def _resize_axis(x: at.Array, axis: int, size: int) -> at.Array:
    """``jax.image.resize(..., method="linear", antialias=True)`` along one axis, by its own weights.

    Why not call it: inside an env step (vmapped, in a scan) on XLA:CPU it ran at 20k 64x64x3 -> 32x32
    images/s and made PixelCartPole's resize wrapper 7x slower than rendering the frame (3.9k env steps/s,
    16 envs, 2 busy cores). The same weights as a ``k``-tap stencil over strided slices (an integer
    shrink factor) ran at 58k; as a matmul (any other factor) at 34k. Results differ from
    ``jax.image.resize`` by float rounding only (at most 1 in uint8).
    """
    n = x.shape[axis]
    if size == n:
        return x
    if n % size == 0:  # shrink by an integer factor: out[o] = sum_k taps[o, k] * x[stride * o + lo + k]
        stride, lo, taps = _stencil(n, size)
        left = max(0, -lo)  # zero padding so that every tap's slice lies inside the array
        pad = [(0, 0)] * x.ndim
        pad[axis] = (left, max(0, stride * (size - 1) + lo + taps.shape[1] - n))
        x = jnp.pad(x, pad)
        shape = [1] * x.ndim
        shape[axis] = size
        first = left + lo  # where tap 0 of output 0 reads
        end = stride * (size - 1) + 1
        terms = [
            lax.slice_in_dim(x, first + k, first + k + end, stride, axis) * jnp.asarray(taps[:, k].reshape(shape))
            for k in range(taps.shape[1])
        ]
        return functools.reduce(jnp.add, terms)
    weights = jnp.asarray(_linear_weights(n, size))
    return jnp.moveaxis(jnp.tensordot(weights, jnp.moveaxis(x, axis, 0), axes=1), 0, axis)


@functools.cache
def _linear_weights(n: int, size: int) -> np.ndarray:
    """``[size, n]``: row ``o`` weighs the inputs of output ``o`` (jax.image.resize's antialiased linear kernel)."""
    with jax.ensure_compile_time_eval():
        eye = jnp.eye(n, dtype=jnp.float32)
        return np.asarray(jax.image.resize(eye, (size, n), method="linear", antialias=True))


@functools.cache
def _stencil(n: int, size: int) -> tuple[int, int, np.ndarray]:
    """``(stride, lo, taps [size, k])`` of ``_linear_weights(n, size)`` with ``n = stride * size``: the inputs of
    output ``o`` lie in ``stride * o + lo + [0, k)``; taps outside the image are 0."""
    weights = _linear_weights(n, size)
    stride = n // size
    nonzero = [np.flatnonzero(row) for row in weights]
    lo = min(int(j[0]) - stride * o for o, j in enumerate(nonzero))
    k = max(int(j[-1]) - stride * o for o, j in enumerate(nonzero)) - lo + 1
    taps = np.zeros((size, k), np.float32)
    for o in range(size):
        for i in range(k):
            if 0 <= stride * o + lo + i < n:
                taps[o, i] = weights[o, stride * o + lo + i]
    return stride, lo, taps


def grayscale(images: at.ArrayLike) -> at.Array:
    """``[..., h, w, 3]`` RGB to ``[..., h, w, 1]`` luma with ``BT601_LUMA`` weights; the dtype is kept.

    uint8 luma is rounded to the nearest integer (255 stays 255: the weights sum to 1).
    """
    images = jnp.asarray(images)
    dtype = _check_dtype(images.dtype, "grayscale")
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"grayscale: images must be RGB [..., h, w, 3], got shape {images.shape}.")
    # A weighted sum, not ``@ weights``: a 3-long dot inside an env step ran 3x slower on XLA:CPU (83k against
    # 263k 64x64 images/s, vmapped in a scan).
    rgb = images.astype(jnp.float32)
    luma = rgb[..., 0] * BT601_LUMA[0] + rgb[..., 1] * BT601_LUMA[1] + rgb[..., 2] * BT601_LUMA[2]
    if dtype == np.uint8:
        luma = jnp.clip(jnp.round(luma), 0, 255)
    return luma[..., None].astype(dtype)


def invert(images: at.ArrayLike, low: float = 0.0, high: float = 1.0) -> at.Array:
    """The photographic negative ``low + high - x``, dtype kept: uint8 ``255 - x``, bool ``~x``; floats
    use the space's ``[low, high]`` (``-x`` on ``[-1, 1]``, ``1 - x`` on ``[0, 1]``).

    Flips a light background to dark: ReLU features of a mostly white frame are dominated by the
    background, while those of a mostly black one fire only on the objects.
    """
    images = jnp.asarray(images)
    if images.dtype == jnp.bool_:
        return ~images
    if images.dtype == jnp.uint8:
        return jnp.uint8(255) - images
    _check_dtype(images.dtype, "invert")
    return (low + high - images).astype(images.dtype)


def to_signed_unit(images: at.ArrayLike) -> at.Float[at.Array, "..."]:
    """uint8 ``[0, 255]`` to float32 ``[-1, 1]``: ``x / 255 * 2 - 1`` (0 -> -1, 255 -> 1), openpi's mapping."""
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise ValueError(f"to_signed_unit: expects uint8 pixels, got {images.dtype}; floats are already scaled.")
    return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0
