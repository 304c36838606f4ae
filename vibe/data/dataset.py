"""The ``Dataset`` protocol: random access to samples that are dicts of numpy arrays.

A sample is one frame of a dataset (for LeRobot: one timestep, with an action
chunk when an action horizon is asked for). Loaders (loader.py) batch samples;
transforms (transforms.py) map one sample dict to another.
"""

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import numpy.typing


@dataclasses.dataclass(frozen=True)
class Feature:
    """Shape and dtype of one field of a sample (no batch axis).

    Attributes:
        shape: shape of the field in one sample, e.g. ``(4,)``, ``(H, 2)`` or ``(8, 8, 3)``.
        dtype: numpy dtype of the field.
    """

    shape: tuple[int, ...]
    dtype: np.typing.DTypeLike  # normalized to an np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


class Dataset(Protocol):
    """A finite, indexable set of samples; what the loaders consume.

    ``__getitem__`` must be safe to call from DataLoader worker processes (no
    JAX arrays, no open device handles) and return arrays whose shapes and
    dtypes are those in ``features``.
    """

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` (``0 <= index < len(self)``)."""
        ...

    @property
    def features(self) -> Mapping[str, Feature]:
        """Field name → shape and dtype of that field in one sample."""
        ...


class ArrayDataset:
    """A ``Dataset`` over a dict of equal-length numpy arrays (row i of each is sample i).

    Used for in-memory data, tests and benchmarks. Arrays are not copied.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array; pass {name: array} with a leading sample axis.")
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"ArrayDataset arrays differ in length {lengths}; give every field the same first axis.")
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self._arrays.items()}

    @property
    def features(self) -> dict[str, Feature]:
        return {k: Feature(v.shape[1:], v.dtype) for k, v in self._arrays.items()}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The underlying arrays, ``[len, *feature.shape]`` each."""
        return dict(self._arrays)
