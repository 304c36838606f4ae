"""Observation and action spaces: ``Discrete(n)`` and ``Box(low, high, shape, dtype)``.

Spaces are host-side descriptions (numpy bounds, Python ints), not pytrees:
build them from concrete env params outside ``jit``. ``sample`` and
``contains`` are pure JAX and can run inside ``jit``/``vmap``.
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


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
    """An axis-aligned box ``low <= x <= high`` of the given shape.

    Bounds are stored as numpy arrays broadcast to ``shape`` (the real bounds of
    the env, e.g. Pendulum's torque is ``[-2, 2]``). A bound at or beyond the
    dtype's largest finite value counts as unbounded for sampling.

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
        shape = tuple(int(d) for d in self.shape)
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
            self.shape == other.shape
            and self.dtype == other.dtype
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype, self.low.tobytes(), self.high.tobytes()))

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


Space = Discrete | Box
