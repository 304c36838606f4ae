"""Pure image ops on ``[..., h, w, c]`` arrays: ``resize_with_pad``, ``grayscale``, ``to_signed_unit``.

All take jnp or numpy arrays with any leading (batch) axes and return jnp arrays
of static shapes, so they jit, vmap and run inside an env step. The env
wrappers built on them live in image_wrappers.py.

Dimension names: ``h, w`` the input height and width, ``H, W`` the target ones,
``c`` channels.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
    *batch, cur_height, cur_width, channels = images.shape
    if (cur_height, cur_width) == (height, width):
        return images if dtype == np.uint8 else jnp.clip(images, -1.0, 1.0)
    new_height, new_width = resized_shape(cur_height, cur_width, height, width)
    resized = jax.image.resize(
        images.astype(jnp.float32), (*batch, new_height, new_width, channels), method="linear", antialias=True
    )
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


def grayscale(images: at.ArrayLike) -> at.Array:
    """``[..., h, w, 3]`` RGB to ``[..., h, w, 1]`` luma with ``BT601_LUMA`` weights; the dtype is kept.

    uint8 luma is rounded to the nearest integer (255 stays 255: the weights sum to 1).
    """
    images = jnp.asarray(images)
    dtype = _check_dtype(images.dtype, "grayscale")
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"grayscale: images must be RGB [..., h, w, 3], got shape {images.shape}.")
    luma = images.astype(jnp.float32) @ jnp.asarray(BT601_LUMA, jnp.float32)
    if dtype == np.uint8:
        luma = jnp.clip(jnp.round(luma), 0, 255)
    return luma[..., None].astype(dtype)


def to_signed_unit(images: at.ArrayLike) -> at.Float[at.Array, "..."]:
    """uint8 ``[0, 255]`` to float32 ``[-1, 1]``: ``x / 255 * 2 - 1`` (0 -> -1, 255 -> 1), openpi's mapping."""
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise ValueError(f"to_signed_unit: expects uint8 pixels, got {images.dtype}; floats are already scaled.")
    return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0
