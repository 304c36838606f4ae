"""Loader benchmark: samples/s of vibe's loaders against a bare lerobot DataLoader.

    tools/bazelw run //vibe/bench:loader
    tools/bazelw run //vibe/bench:loader -- --horizon 10 --workers 2

Generates a LeRobot dataset with vibe's writer (``--episodes`` × ``--length``
frames: an 8-dim state, ``--image``² RGB PNG frames, 4-dim actions), then,
with an action horizon of ``--horizon`` steps (lerobot #2895: direct indexing
with ``delta_timestamps`` is the slow path):

- per-sample ``__getitem__`` milliseconds of ``LeRobotDataset`` and of vibe's ``LeRobotReader``;
- samples/s of a torch ``DataLoader`` over ``LeRobotDataset`` (shuffle, workers, default collate);
- samples/s of ``StreamingLoader`` over ``LeRobotReader`` (same workers; batches end on the mesh);
- samples/s of the in-memory path (``InMemoryLoader``: ``sample_batch`` in jit, whole dataset on device).

Each loader is warmed up (workers started, first batches read) before timing.
Prints a table and writes JSON. Other processes on the host add noise.
"""

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import tyro

from vibe.bench import report
from vibe.core.usage import bazel_prog
from vibe.data import loader as loaders
from vibe.data import testing
from vibe.data.lerobot_reader import LeRobotReader
from vibe.sharding.mesh import make_mesh
from vibe.train.runner import user_path


@dataclasses.dataclass(frozen=True)
class Args:
    episodes: int = 20  # episodes in the generated dataset
    length: int = 100  # frames per episode
    image: int = 32  # image height and width (pixels)
    horizon: int = 50  # action horizon H (delta_timestamps of H steps)
    batch: int = 64  # batch size (global)
    workers: int = 2  # DataLoader worker processes for both streaming loaders
    mp_context: str = "fork"  # vibe's workers start as the bare DataLoader's do (torch's Linux default)
    batches: int = 20  # timed batches per streaming loader (x10 for the in-memory one)
    items: int = 200  # timed single __getitem__ calls
    out: str = "bench_results/loader.json"  # JSON output, relative to where the command runs


def samples_per_second(batches: Iterator[Any], batch: int, count: int, sync: Callable[[Any], Any]) -> float:
    for _ in range(3):  # warm-up: worker start, first reads, compile
        sync(next(batches))
    start = time.perf_counter()
    for _ in range(count):
        sync(next(batches))
    return count * batch / (time.perf_counter() - start)


def forever(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def main(args: Args) -> None:
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="vibe-bench-hf-"))
    root = os.path.join(tempfile.mkdtemp(prefix="vibe-bench-loader-"), "ds")
    start = time.perf_counter()
    testing.write_dataset(
        root, lengths=[args.length] * args.episodes, state_dim=8, image_shape=(args.image, args.image, 3), action_dim=4
    )
    write_seconds = time.perf_counter() - start
    frames = args.episodes * args.length

    import torch
    from lerobot.datasets import LeRobotDataset

    reader = LeRobotReader(root, action_horizon=args.horizon)
    fps = reader.fps
    bare = LeRobotDataset(
        f"local/{os.path.basename(root)}",
        root=root,
        delta_timestamps={"action": [i / fps for i in range(args.horizon)]},
        video_backend="pyav",
    )
    rng = np.random.default_rng(0)
    picks = rng.integers(0, frames, args.items)

    def per_item_ms(get: Callable[[int], Any]) -> float:
        get(0)
        start = time.perf_counter()
        for i in picks:
            get(int(i))
        return (time.perf_counter() - start) / args.items * 1e3

    lerobot_ms = per_item_ms(bare.__getitem__)
    reader_ms = per_item_ms(reader.__getitem__)

    bare_loader = torch.utils.data.DataLoader(
        bare,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    bare_sps = samples_per_second(forever(bare_loader), args.batch, args.batches, lambda b: b)

    mesh = make_mesh(1)
    config = loaders.LoaderConfig(batch_size=args.batch, num_workers=args.workers, mp_context=args.mp_context)
    stream = loaders.StreamingLoader(reader, mesh, config)
    stream_sps = samples_per_second(stream, args.batch, args.batches, jax.block_until_ready)

    start = time.perf_counter()
    data = loaders.to_device(loaders.load_arrays(reader), mesh)
    load_seconds = time.perf_counter() - start
    memory = loaders.InMemoryLoader(data, mesh, args.batch, jax.random.key(0))
    memory_sps = samples_per_second(memory, args.batch, args.batches * 10, jax.block_until_ready)

    rows = [
        ("dataset: frames | write seconds", f"{frames:,} | {write_seconds:.1f}"),
        (f"__getitem__ ms, H={args.horizon}: LeRobotDataset | LeRobotReader", f"{lerobot_ms:.2f} | {reader_ms:.2f}"),
        (f"bare lerobot DataLoader ({args.workers} workers): samples/s", f"{bare_sps:,.0f}"),
        (f"vibe StreamingLoader ({args.workers} workers, on mesh): samples/s", f"{stream_sps:,.0f}"),
        ("vibe in-memory (sample_batch in jit): samples/s | load+put s", f"{memory_sps:,.0f} | {load_seconds:.1f}"),
    ]
    report.print_table(
        rows,
        title=f"loaders: {args.episodes}×{args.length} frames, {args.image}² images, "
        f"H={args.horizon}, batch {args.batch}",
    )
    report.write_json(
        user_path(args.out),
        {
            "args": dataclasses.asdict(args),
            "frames": frames,
            "write_seconds": write_seconds,
            "getitem_ms": {"lerobot": lerobot_ms, "vibe_reader": reader_ms},
            "samples_per_second": {
                "lerobot_dataloader": bare_sps,
                "vibe_streaming": stream_sps,
                "vibe_in_memory": memory_sps,
            },
            "in_memory_load_seconds": load_seconds,
        },
    )


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
