"""Batches on a JAX mesh, two ways behind one interface (``Loader``).

In memory (small datasets: state/action RL data): the whole dataset goes onto
the devices once and ``sample_batch`` draws a batch inside jit, so a train
step samples with no host round trip and a resumed run is exact given its key:

    data = to_device(load_arrays(reader), mesh)          # once
    batch = sample_batch(data, key, 256)                 # inside the jitted train step

Streaming (datasets that do not fit, images, video): a torch ``DataLoader``
with worker processes reads the ``Dataset`` (through ``__getitems__``, one
batched read per batch, when the dataset has it), collates numpy arrays, and
each batch becomes a global ``jax.Array`` split over ``DATA_AXIS`` with
``jax.make_array_from_process_local_data``. In a multi-host run every process
reads only its own slice of each global batch. Epochs are permutations seeded
by ``(seed, epoch)``; the position ``(epoch, batch)`` is explicit state, so a
loader restored from ``get_state()`` yields exactly the batches an
uninterrupted one would have:

    loader = StreamingLoader(reader, mesh, LoaderConfig(batch_size=256))
    batch = next(loader)
    saved = loader.get_state()                           # {"epoch": e, "batch": i}
    StreamingLoader(reader, mesh, config, state=saved)   # continues with batch i of epoch e

Without ``jax_enable_x64``, int64/float64 fields arrive as int32/float32
(JAX's own canonical types) — convert on the host, not silently on device.
"""

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vibe.data.dataset import Dataset
from vibe.data.transforms import Transform
from vibe.sharding.mesh import DATA_AXIS

Batch = dict[str, Any]


class Loader(Protocol):
    """An endless iterator of global batches on a mesh, with resumable position."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __next__(self) -> Batch: ...

    def get_state(self) -> dict[str, Any]:
        """What a checkpoint stores to resume the stream exactly."""
        ...


def _host_dtype(x: np.ndarray) -> np.ndarray:
    """The dtype JAX will hold (64-bit types become 32-bit without x64), converted once on the host."""
    if jax.config.jax_enable_x64:
        return x
    if x.dtype == np.int64:
        return x.astype(np.int32)
    if x.dtype == np.uint64:
        return x.astype(np.uint32)
    if x.dtype == np.float64:
        return x.astype(np.float32)
    return x


# ---------------------------------------------------------------- in memory


def load_arrays(dataset: Dataset, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Every sample of ``dataset`` stacked: ``{field: [len, *shape]}`` (batched reads when offered)."""
    parts: list[Batch] = []
    for start in range(0, len(dataset), chunk):
        indices = list(range(start, min(start + chunk, len(dataset))))
        parts.append(collate(_fetch(dataset, indices)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def to_device(arrays: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Puts the dataset on the mesh once: split over ``DATA_AXIS`` when the length divides, else replicated.

    In a multi-host run every process passes the same (whole) arrays.
    """
    out = {}
    for k, v in arrays.items():
        v = _host_dtype(np.asarray(v))
        spec = PartitionSpec(DATA_AXIS) if v.ndim and len(v) % mesh.size == 0 else PartitionSpec()
        out[k] = jax.device_put(v, NamedSharding(mesh, spec))
    return out


def gather(data: Mapping[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
    """Rows ``indices`` of every field (jittable)."""
    return {k: jnp.take(v, indices, axis=0) for k, v in data.items()}


def sample_batch(data: Mapping[str, jax.Array], key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """``batch_size`` rows drawn uniformly with replacement (pure and jittable; ``batch_size`` static)."""
    n = next(iter(data.values())).shape[0]
    return gather(data, jax.random.randint(key, (batch_size,), 0, n))


class InMemoryLoader:
    """``sample_batch`` as a ``Loader``: batch i uses ``fold_in(key, i)``; the state is ``i``."""

    def __init__(self, data: Mapping[str, jax.Array], mesh: Mesh, batch_size: int, key: jax.Array, step: int = 0):
        _check_batch(batch_size, mesh, 1)
        self.data, self.key, self.step = dict(data), key, step
        sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        self._sample = jax.jit(
            lambda data, key, step: sample_batch(data, jax.random.fold_in(key, step), batch_size),
            out_shardings=sharding,
        )

    def __iter__(self) -> "InMemoryLoader":
        return self

    def __next__(self) -> dict[str, jax.Array]:
        batch: dict[str, jax.Array] = self._sample(self.data, self.key, self.step)
        self.step += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"step": self.step}


# ---------------------------------------------------------------- streaming


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """Settings of the streaming loader.

    Attributes:
        batch_size: global batch (all processes together); divisible by the device count.
        num_workers: DataLoader worker processes (0 reads in the main process).
        seed: seeds every epoch's permutation (with the epoch number) and torch's worker seeds.
        shuffle: a new permutation each epoch; False reads in order.
        mp_context: how workers start. "spawn" (default, as openpi): each worker re-imports
            torch/JAX/lerobot (first batch after ~22 s with 2 workers on a busy 2-core box), and any
            transform works. "fork" starts in ~5 s but is only safe while workers stay off JAX: a
            forked worker running a JAX transform (ResizeImages) deadlocked here, as JAX warns.
        prefetch_factor: batches each worker reads ahead.
    """

    batch_size: int
    num_workers: int = 2
    seed: int = 0
    shuffle: bool = True
    mp_context: str = "spawn"
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: pass a positive global batch size")
        if self.mp_context not in ("fork", "spawn", "forkserver"):
            raise ValueError(f"mp_context={self.mp_context!r}: pass 'fork', 'spawn' or 'forkserver'")


def _check_batch(batch_size: int, mesh: Mesh, process_count: int) -> None:
    if batch_size % mesh.size or batch_size % process_count:
        raise ValueError(
            f"batch_size={batch_size} must divide by the {mesh.size} devices of the mesh "
            f"(and the {process_count} processes); pass a multiple of {mesh.size}"
        )


class EpochSampler:
    """Which dataset rows make batch ``i`` of epoch ``e``, for one process (drop_last: full batches only)."""

    def __init__(self, length: int, batch_size: int, seed: int, shuffle: bool, process_index: int, process_count: int):
        self.length, self.batch_size, self.seed, self.shuffle = length, batch_size, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.batches_per_epoch = length // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"batch_size={batch_size} is larger than the dataset ({length} samples); pass a smaller one"
            )
        self._epoch = -1
        self._order: np.ndarray = np.arange(length)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of epoch ``epoch`` (the same in every process)."""
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch = epoch
            self._order = rng.permutation(self.length) if self.shuffle else np.arange(self.length)
        return self._order

    def local_indices(self, epoch: int, batch: int) -> np.ndarray:
        """This process's slice of global batch ``batch`` of ``epoch``."""
        local = self.batch_size // self.process_count
        start = batch * self.batch_size + self.process_index * local
        return self.order(epoch)[start : start + local]

    def stream(self, epoch: int, batch: int) -> Iterator[list[int]]:
        """Local index lists from position ``(epoch, batch)`` on, forever."""
        while True:
            for i in range(batch, self.batches_per_epoch):
                yield self.local_indices(epoch, i).tolist()
            epoch, batch = epoch + 1, 0


def _fetch(dataset: Any, indices: Sequence[int]) -> list[Batch]:
    getitems = getattr(dataset, "__getitems__", None)
    return list(getitems(indices)) if getitems else [dataset[i] for i in indices]


def collate(samples: Sequence[Batch]) -> Batch:
    """Stacks samples field by field (nested dicts too) into numpy arrays ``[b, ...]``."""
    first = samples[0]
    return {
        k: collate([s[k] for s in samples]) if isinstance(first[k], Mapping) else np.stack([s[k] for s in samples])
        for k in first
    }


class _TorchView:
    """The dataset (plus a transform) as torch's map-style dataset; batched reads through ``__getitems__``."""

    def __init__(self, dataset: Dataset, transform: Transform | None):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        samples = _fetch(self.dataset, indices)
        return [self.transform(s) for s in samples] if self.transform else samples


def _worker_init(_: int) -> None:
    # A worker that touches JAX (e.g. ResizeImages) must not grab device memory meant for training.
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


class StreamingLoader:
    """A torch DataLoader over ``dataset`` yielding global batches on ``mesh`` (see the module docstring).

    Args:
        dataset: any ``Dataset`` (a ``LeRobotReader``, an ``ArrayDataset``...), picklable for workers.
        mesh: batches are split over its ``DATA_AXIS``.
        config: batch size, workers, seed.
        transform: applied to each sample in the workers (e.g. ``compose(group.inputs)``).
        state: a ``get_state()`` to continue from; default the start of epoch 0.
        process_index, process_count: this process in a multi-host run (default: JAX's).
    """

    def __init__(
        self,
        dataset: Dataset,
        mesh: Mesh,
        config: LoaderConfig,
        *,
        transform: Transform | None = None,
        state: Mapping[str, int] | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        _check_batch(config.batch_size, mesh, self.process_count)
        self.dataset, self.mesh, self.config, self.transform = dataset, mesh, config, transform
        self.sampler = EpochSampler(
            len(dataset), config.batch_size, config.seed, config.shuffle, self.process_index, self.process_count
        )
        self.epoch, self.batch = (int(state["epoch"]), int(state["batch"])) if state else (0, 0)
        self._sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        self._stacked = NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))
        self._iterator: Iterator[Batch] | None = None

    def get_state(self) -> dict[str, int]:
        """The position of the next batch: ``{"epoch": e, "batch": i}``."""
        return {"epoch": self.epoch, "batch": self.batch}

    def _start(self) -> Iterator[Batch]:
        import torch
        from torch.utils.data import DataLoader

        workers = self.config.num_workers
        view: Any = _TorchView(self.dataset, self.transform)  # duck-typed: torch needs only len and getitem(s)
        loader: DataLoader[Batch] = DataLoader(
            view,
            batch_sampler=self.sampler.stream(self.epoch, self.batch),  # full batches only (drop_last)
            num_workers=workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.config.seed),
            worker_init_fn=_worker_init if workers else None,
            multiprocessing_context=self.config.mp_context if workers else None,
            prefetch_factor=self.config.prefetch_factor if workers else None,
            persistent_workers=bool(workers),
        )
        return iter(loader)

    def __iter__(self) -> "StreamingLoader":
        return self

    def close(self) -> None:
        """Stops the worker processes (they also stop when the loader is garbage collected)."""
        self._iterator = None

    def next_local(self) -> Batch:
        """The next local (this process's) batch as numpy, advancing the position."""
        if self._iterator is None:
            self._iterator = self._start()
        local = next(self._iterator)
        self.batch += 1
        if self.batch == self.sampler.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return local

    def __next__(self) -> Batch:
        local = self.next_local()
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self._sharding, _host_dtype(np.asarray(x))), local
        )

    def next_chunk(self, k: int, size: int) -> Batch:
        """The next ``k`` batches stacked into ``[size, batch, ...]`` global arrays (split over ``DATA_AXIS``
        on axis 1), advancing the position by ``k``; rows ``k..size-1`` repeat the last batch (a shorter
        last chunk keeps the compiled shape; the train chunk runs only ``k`` updates)."""
        local = [self.next_local() for _ in range(k)]
        local += [local[-1]] * (size - k)
        stacked = jax.tree.map(lambda *xs: _host_dtype(np.stack(xs)), *local)
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._stacked, x), stacked)

    def abstract_chunk(self, size: int) -> Batch:
        """Shapes, dtypes and shardings of ``next_chunk(k, size)`` (to compile before the first read)."""
        return {
            k: jax.ShapeDtypeStruct(
                (size, self.config.batch_size, *f.shape),
                _host_dtype(np.zeros((), f.dtype)).dtype,
                sharding=self._stacked,
            )
            for k, f in self.dataset.features.items()
        }

    def batch_bytes(self) -> int:
        """Bytes of one global batch."""
        features = self.dataset.features.values()
        return self.config.batch_size * sum(int(np.prod(f.shape)) * np.dtype(f.dtype).itemsize for f in features)
