"""Drawing in JAX for pixel envs: signed distances to shapes, antialiased coverage, compositing.

A scene is drawn by evaluating each shape's signed distance (world units,
negative inside) at every pixel centre and turning it into a coverage in
``[0, 1]`` with one pixel of antialiasing; colours are blended back to front.
Everything is elementwise over the ``[h, w]`` grid (no gathers, no loops), so
it jits, vmaps and fuses into the env step.
"""

from collections.abc import Sequence

import jax.numpy as jnp

from vibe.core import typing as at


def pixel_grid(
    height: int, width: int, pixels_per_unit: at.ArrayLike, center_y: at.ArrayLike = 0.0
) -> tuple[at.Float[at.Array, "1 w"], at.Float[at.Array, "h 1"]]:
    """World coordinates ``(x [1, w], y [h, 1])`` of the pixel centres.

    The image centre is at ``(0, center_y)``; x grows to the right, y upwards (rows go down).
    """
    scale = jnp.asarray(pixels_per_unit, jnp.float32)
    cols = (jnp.arange(width, dtype=jnp.float32) + 0.5 - width / 2) / scale
    rows = jnp.asarray(center_y, jnp.float32) - (jnp.arange(height, dtype=jnp.float32) + 0.5 - height / 2) / scale
    return cols[None, :], rows[:, None]


def coverage(distance: at.Float[at.Array, "h w"], pixels_per_unit: at.ArrayLike) -> at.Float[at.Array, "h w"]:
    """Fraction of each pixel inside a shape, from the signed distance of its centre: 1 px of antialiasing."""
    return jnp.clip(0.5 - distance * pixels_per_unit, 0.0, 1.0)


def box_distance(
    px: at.Array, py: at.Array, cx: at.ArrayLike, cy: at.ArrayLike, hx: at.ArrayLike, hy: at.ArrayLike
) -> at.Array:
    """Signed distance to an axis-aligned box with centre ``(cx, cy)`` and half extents ``(hx, hy)``."""
    qx, qy = jnp.abs(px - jnp.asarray(cx)) - hx, jnp.abs(py - jnp.asarray(cy)) - hy
    outside = jnp.hypot(jnp.maximum(qx, 0.0), jnp.maximum(qy, 0.0))
    return outside + jnp.minimum(jnp.maximum(qx, qy), 0.0)


def segment_distance(
    px: at.Array,
    py: at.Array,
    ax: at.ArrayLike,
    ay: at.ArrayLike,
    bx: at.ArrayLike,
    by: at.ArrayLike,
    radius: at.ArrayLike,
) -> at.Array:
    """Signed distance to the capsule of ``radius`` around the segment ``a -> b`` (``a != b``)."""
    ax, ay, bx, by = (jnp.asarray(v, jnp.float32) for v in (ax, ay, bx, by))
    pax, pay, bax, bay = px - ax, py - ay, bx - ax, by - ay
    t = jnp.clip((pax * bax + pay * bay) / (bax * bax + bay * bay), 0.0, 1.0)
    return jnp.hypot(pax - bax * t, pay - bay * t) - radius


def circle_distance(px: at.Array, py: at.Array, cx: at.ArrayLike, cy: at.ArrayLike, radius: at.ArrayLike) -> at.Array:
    """Signed distance to a disc."""
    return jnp.hypot(px - jnp.asarray(cx), py - jnp.asarray(cy)) - radius


def composite(
    background: Sequence[float], layers: Sequence[tuple[at.Float[at.Array, "h w"], Sequence[float]]]
) -> at.UInt[at.Array, "h w 3"]:
    """Blends ``(coverage, rgb)`` layers, back to front, over a ``background`` colour; rounds to uint8."""
    image = jnp.asarray(background, jnp.float32)
    for alpha, color in layers:
        image = image + alpha[..., None] * (jnp.asarray(color, jnp.float32) - image)
    return jnp.round(image).astype(jnp.uint8)
