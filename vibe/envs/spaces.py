"""Observation and action spaces: ``Discrete(n)``, ``Box(low, high, shape, dtype)`` and ``Image(h, w, c)``.

Spaces are host-side descriptions (numpy bounds, Python ints), not pytrees:
build them from concrete env params outside ``jit``. ``sample`` and
``contains`` are pure JAX and can run inside ``jit``/``vmap``.

``Image`` is a ``Box`` (an ``[h, w, c]`` array with per-pixel bounds), so code
that only needs ``shape``/``dtype``/bounds treats it as one; encoders and image
wrappers check ``isinstance(space, Image)`` to know the pixel convention.
``space_to_json``/``space_from_json`` store spaces in checkpoints as strict JSON.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at


@dataclasses.dataclass(frozen=True)
class Discrete:
    """The integers ``0 .. n-1``; a sample is an int32 scalar.

    Attributes:
        n: number of values (actions), at least 1.
    """

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, (int, np.integer)) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"Discrete.n must be a positive int, got {self.n!r}; pass the number of actions, e.g. 2.")
        object.__setattr__(self, "n", int(self.n))

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int32)

    def sample(self, key: at.Key) -> at.Int[at.Array, ""]:
        """Uniform over ``0 .. n-1``."""
        return jax.random.randint(key, (), 0, self.n, dtype=jnp.int32)

    def contains(self, x: at.ArrayLike) -> at.Bool[at.Array, ""]:
        """True when ``x`` is a scalar integer value in ``[0, n)``."""
        x = jnp.asarray(x)
        if x.shape != ():
            return jnp.asarray(False)
        return (x >= 0) & (x < self.n) & (jnp.floor(x) == x)


def _scalar_repr(bound: np.ndarray) -> str:
    """One value when the bound is uniform (image-sized boxes would print thousands), else the array."""
    if bound.size > 0 and np.all(bound == bound.flat[0]):
        return repr(bound.flat[0].item())
    # One line, so error messages that quote a space stay one line.
    return np.array2string(bound, separator=", ", threshold=16, max_line_width=10**9).replace("\n", "")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Box:
    """An axis-aligned box ``low <= x <= high`` of the given shape (any rank, e.g. ``(10, 10, 4)``).

    Bounds are stored as numpy arrays broadcast to ``shape`` (the real bounds of
    the env, e.g. Pendulum's torque is ``[-2, 2]``). A bound at or beyond the
    dtype's largest finite value counts as unbounded for sampling. Two boxes are
    equal when their class, shape, dtype and bounds are equal (a ``Box`` never
    equals an ``Image``, so a round trip through JSON keeps the kind).

    Attributes:
        low: lower bound, scalar or array broadcastable to ``shape``.
        high: upper bound, scalar or array broadcastable to ``shape``.
        shape: shape of one element.
        dtype: element dtype (float32 unless the env says otherwise).
    """

    low: Any
    high: Any
    shape: tuple[int, ...]
    dtype: Any = np.float32

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(d) for d in self.shape)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Box.shape must be a tuple of ints, got {self.shape!r}.") from e
        if any(d < 0 for d in shape):
            raise ValueError(f"Box.shape must not have negative sizes, got {shape}.")
        dtype = np.dtype(self.dtype)
        try:
            low = np.broadcast_to(np.asarray(self.low, dtype=dtype), shape).copy()
            high = np.broadcast_to(np.asarray(self.high, dtype=dtype), shape).copy()
        except ValueError as e:
            raise ValueError(
                f"Box bounds low={self.low!r}, high={self.high!r} do not broadcast to shape={shape}; "
                "pass scalars or arrays of that shape."
            ) from e
        if np.any(low > high):
            raise ValueError(f"Box needs low <= high everywhere, got low={low}, high={high}; swap or fix the bounds.")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Box):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.shape == other.shape
            and self.dtype == other.dtype
            and np.array_equal(self.low, other.low, equal_nan=self.dtype.kind == "f")
            and np.array_equal(self.high, other.high, equal_nan=self.dtype.kind == "f")
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.shape, self.dtype, self.low.tobytes(), self.high.tobytes()))

    def __repr__(self) -> str:
        low, high = _scalar_repr(self.low), _scalar_repr(self.high)
        return f"Box(low={low}, high={high}, shape={self.shape}, dtype={self.dtype.name})"

    @property
    def bounded(self) -> np.ndarray:
        """Boolean mask of the dimensions with two finite, usable bounds."""
        if not np.issubdtype(self.dtype, np.floating):
            return np.ones(self.shape, dtype=bool)
        # Computed in float64: high - low overflows float32 for CartPole's +-float32.max bounds.
        width = self.high.astype(np.float64) - self.low.astype(np.float64)
        return np.isfinite(width) & (width < np.finfo(self.dtype).max)

    def sample(self, key: at.Key) -> at.Array:
        """Uniform on bounded dimensions; standard normal clipped to the bounds elsewhere."""
        if self.dtype == np.bool_:
            return jax.random.bernoulli(key, 0.5, self.shape) & self.high | self.low
        if np.issubdtype(self.dtype, np.integer):
            return jax.random.randint(key, self.shape, self.low, self.high.astype(np.int64) + 1, dtype=self.dtype)
        bounded = self.bounded
        low = np.where(bounded, self.low, 0.0).astype(self.dtype)
        high = np.where(bounded, self.high, 1.0).astype(self.dtype)
        uniform_key, normal_key = jax.random.split(key)
        uniform = jax.random.uniform(uniform_key, self.shape, self.dtype, low, high)
        if bounded.all():
            return uniform
        normal = jnp.clip(jax.random.normal(normal_key, self.shape, self.dtype), self.low, self.high)
        return jnp.where(bounded, uniform, normal)

    def contains(self, x: at.ArrayLike) -> at.Bool[at.Array, ""]:
        """True when ``x`` has this shape and lies within the bounds."""
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.asarray(False)
        return jnp.all((x >= self.low) & (x <= self.high))


# Pixel value ranges by dtype kind: uint8 intensities, binary planes (MinAtar), and floats
# either in [-1, 1] (what NormalizeImage and resize_with_pad produce, openpi's convention) or [0, 1].
_UINT8_RANGE = (0, 255)
_FLOAT_LOWS = (-1.0, 0.0)


class Image(Box):
    """An ``[height, width, channels]`` image: a ``Box`` whose bounds are the pixel range of its dtype.

    - ``uint8`` (default): intensities in ``[0, 255]``; 1 byte per pixel in a replay buffer.
    - ``bool``: binary feature planes (MinAtar), ``False``/``True``; also 1 byte per pixel.
    - float (``float16``, ``float32``, ``float64``): ``[-1, 1]`` by default
      (``low=-1.0``), or ``[0, 1]`` with ``low=0.0``; ``high`` is always 1.

    A subclass of ``Box`` (not a separate kind) because every consumer that only needs
    ``shape``/``dtype``/bounds (replay buffers, ``NormalizeObservation``, a dummy
    ``jnp.zeros(space.shape, space.dtype)``) then works unchanged, while encoders
    dispatch on ``isinstance(space, Image)``. ``dataclasses.replace`` does not apply:
    build a new ``Image``.

    Args:
        height, width, channels: positive sizes.
        dtype: pixel dtype, see above.
        low: only for float images: ``-1.0`` or ``0.0``.
    """

    def __init__(self, height: int, width: int, channels: int, dtype: Any = np.uint8, *, low: float | None = None):
        sizes = {"height": height, "width": width, "channels": channels}
        for field, size in sizes.items():
            if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
                raise ValueError(f"Image.{field} must be a positive int, got {size!r}.")
        dtype = _image_dtype(dtype)
        lo, hi = _pixel_range(dtype, low)
        super().__init__(lo, hi, (int(height), int(width), int(channels)), dtype)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def channels(self) -> int:
        return self.shape[2]

    def __repr__(self) -> str:
        low = f", low={self.low.flat[0].item()}" if self.dtype.kind == "f" else ""
        return f"Image({self.height}, {self.width}, {self.channels}, dtype={self.dtype.name}{low})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle/copy through the constructor: Box's fields are derived here.
        low = self.low.flat[0].item() if self.dtype.kind == "f" else None
        return (_make_image, (self.height, self.width, self.channels, self.dtype.name, low))

    def sample(self, key: at.Key) -> at.Array:
        """Uniform pixels: any uint8 value, fair coin flips for bool, uniform floats in the range."""
        if self.dtype.kind == "f":
            low, high = float(self.low.flat[0]), float(self.high.flat[0])
            return jax.random.uniform(key, self.shape, self.dtype, low, high)
        return super().sample(key)

    def contains(self, x: at.ArrayLike) -> at.Bool[at.Array, ""]:
        """True when ``x`` has this shape, exactly this dtype, and pixels in the range.

        The dtype must match (unlike ``Box``): a float32 frame where uint8 is declared
        means 4x the replay memory and a wrong pixel scale, a bug to catch in tests.
        """
        x = jnp.asarray(x)
        if x.shape != self.shape or x.dtype != self.dtype:
            return jnp.asarray(False)
        return super().contains(x)


def _make_image(height: int, width: int, channels: int, dtype: str, low: float | None) -> Image:
    return Image(height, width, channels, dtype, low=low)


def _image_dtype(dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"Image.dtype {dtype!r} is not a dtype; use uint8, bool or a float type.") from e
    if dtype == np.uint8 or dtype == np.bool_ or dtype.kind == "f":
        return dtype
    raise ValueError(f"Image.dtype must be uint8, bool or a float type, got {dtype.name}; cast the pixels first.")


def _pixel_range(dtype: np.dtype, low: float | None) -> tuple[Any, Any]:
    if dtype.kind == "f":
        low = -1.0 if low is None else low
        if low not in _FLOAT_LOWS:
            raise ValueError(f"Image.low for float images must be -1.0 ([-1, 1]) or 0.0 ([0, 1]), got {low!r}.")
        return float(low), 1.0
    if low is not None:
        raise ValueError(
            f"Image.low is only for float images; a {dtype.name} image's range is fixed, drop low={low!r}."
        )
    if dtype == np.bool_:
        return False, True
    return _UINT8_RANGE


Space = Discrete | Box | Image

# JSON: strict JSON has no inf/nan, so non-finite bounds are these strings. Finite floats go
# through Python floats (float64), which hold every float16/float32 value exactly, so
# float32.max (CartPole's "unbounded") round-trips bit for bit.
_NON_FINITE = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}


def _encode_value(x: Any) -> Any:
    if isinstance(x, list):
        return [_encode_value(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _encode_bound(bound: np.ndarray) -> Any:
    """One value when the bound is uniform, else nested lists; non-finite floats as strings."""
    if bound.size > 0 and np.all(bound == bound.flat[0]):
        return _encode_value(bound.flat[0].item())
    return _encode_value(bound.tolist())


def _decode_bound(value: Any, field: str) -> Any:
    if isinstance(value, str):
        if value not in _NON_FINITE:
            raise ValueError(
                f"space JSON field {field!r}: unknown string {value!r}; use a number, 'inf', '-inf' or 'nan'."
            )
        return _NON_FINITE[value]
    if isinstance(value, list):
        return [_decode_bound(v, field) for v in value]
    if isinstance(value, (bool, int, float)):
        return value
    raise ValueError(
        f"space JSON field {field!r} must be a number, 'inf'/'-inf'/'nan', or nested lists; got {value!r}."
    )


def space_to_json(space: Space) -> dict[str, Any]:
    """A strict-JSON-safe dict describing ``space``; ``space_from_json`` inverts it exactly.

    ``{"kind": "discrete", "n": 2, "shape": [], "dtype": "int32"}``, or
    ``{"kind": "box" | "image", "shape": [...], "dtype": "float32", "low": ..., "high": ...}``
    where a bound is one value when uniform, else nested lists, and inf/-inf/nan are strings.
    """
    if isinstance(space, Discrete):
        return {"kind": "discrete", "n": space.n, "shape": [], "dtype": "int32"}
    if isinstance(space, Box):
        return {
            "kind": "image" if isinstance(space, Image) else "box",
            "shape": list(space.shape),
            "dtype": space.dtype.name,
            "low": _encode_bound(space.low),
            "high": _encode_bound(space.high),
        }
    raise ValueError(f"space_to_json: {space!r} is not a Discrete, Box or Image.")


def _field(d: dict[str, Any], name: str) -> Any:
    if name not in d:
        raise ValueError(f"space JSON {d!r} is missing the field {name!r}.")
    return d[name]


def _same_bound(expected: np.ndarray, value: Any) -> bool:
    try:
        return bool(np.array_equal(np.broadcast_to(np.asarray(value, expected.dtype), expected.shape), expected))
    except (TypeError, ValueError):
        return False


def space_from_json(d: Any) -> Space:
    """The space ``space_to_json`` described; raises ValueError naming a missing or bad field."""
    if not isinstance(d, dict):
        raise ValueError(f"space JSON must be a dict, got {type(d).__name__}: {d!r}.")
    kind = _field(d, "kind")
    if kind == "discrete":
        n = _field(d, "n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"space JSON field 'n' must be a positive int, got {n!r}.")
        return Discrete(n)
    if kind not in ("box", "image"):
        raise ValueError(f"space JSON field 'kind' must be 'discrete', 'box' or 'image', got {kind!r}.")
    shape = _field(d, "shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"space JSON field 'shape' must be a list of ints, got {shape!r}.")
    try:
        dtype = np.dtype(_field(d, "dtype"))
    except TypeError as e:
        raise ValueError(f"space JSON field 'dtype' is not a numpy dtype name: {d['dtype']!r}.") from e
    low, high = _decode_bound(_field(d, "low"), "low"), _decode_bound(_field(d, "high"), "high")
    if kind == "box":
        try:
            return Box(np.asarray(low, dtype=dtype), np.asarray(high, dtype=dtype), tuple(shape), dtype)
        except ValueError as e:
            raise ValueError(
                f"space JSON fields 'low'/'high' do not fit shape {shape} and dtype {dtype.name}: {e}"
            ) from e
    if len(shape) != 3:
        raise ValueError(f"space JSON field 'shape' of an image must be [height, width, channels], got {shape!r}.")
    float_low = float(low) if dtype.kind == "f" and isinstance(low, (int, float)) else None
    image = Image(shape[0], shape[1], shape[2], dtype, low=float_low)
    if not (_same_bound(image.low, low) and _same_bound(image.high, high)):
        raise ValueError(
            f"space JSON fields 'low'/'high' ({low!r}, {high!r}) are not the pixel range of a {dtype.name} image; "
            "an image's bounds follow from its dtype (see spaces.Image)."
        )
    return image
