"""Checkpoint benchmark: the cost of a save in flight, save/restore seconds, checkpoint size.

    tools/bazelw run //vibe/bench:checkpoint
    tools/bazelw run //vibe/bench:checkpoint -- --presets cartpole_ppo --repeats 5

For each preset's default run state: the time of one train chunk alone and
with an async save started just before it (goal: ≤ 1.1×), the blocking part
of a save (copying the state, handing it to orbax), the time until the save is
committed, the time to restore the latest checkpoint, and its size on disk.
Medians over repeats; prints a table and writes JSON.
"""

import dataclasses
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import tyro

from vibe.bench import report
from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint.config import CheckpointConfig
from vibe.config import presets
from vibe.scripts import training
from vibe.train.loop import make_train_chunk
from vibe.train.runner import user_path


@dataclasses.dataclass(frozen=True)
class Args:
    presets: tuple[str, ...] = ("cartpole_ppo", "cartpole_dqn")  # runs whose state is saved
    updates_per_chunk: int = 16  # updates in the timed chunk
    repeats: int = 7  # timed repetitions (medians are reported)
    out: str = "bench_results/checkpoint.json"  # JSON output, relative to where the command runs


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def bench_preset(name: str, args: Args) -> dict:
    algorithm = training.make_algorithm(presets.get(name))
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(0))
    k = jnp.int32(args.updates_per_chunk)
    chunk = make_train_chunk(algorithm.train_step).lower(state, k).compile()
    state, _ = chunk(state, k)  # warm up (DQN/SAC fill their buffer past the warm-up)
    jax.block_until_ready(state)

    with tempfile.TemporaryDirectory() as root:
        manager, _ = checkpoints.initialize_checkpoint_dir(
            os.path.join(root, "run"), config=CheckpointConfig(max_to_keep=2), overwrite=False, resume=False
        )
        alone, with_save, blocking, committed, restore = [], [], [], [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            state, metrics = chunk(state, k)
            jax.block_until_ready(metrics)
            alone.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            checkpoints.save(manager, i + 1, state, {"preset": name})
            t1 = time.perf_counter()
            state, metrics = chunk(state, k)
            jax.block_until_ready(metrics)
            t2 = time.perf_counter()
            manager.wait_until_finished()
            t3 = time.perf_counter()
            blocking.append(t1 - t0)
            with_save.append(t2 - t1)
            committed.append(t3 - t0)

            t0 = time.perf_counter()
            checkpoints.restore(manager, jax.eval_shape(lambda s: s, state))
            restore.append(time.perf_counter() - t0)
        size = directory_bytes(os.path.join(root, "run", str(manager.latest_step())))
        manager.close()
    chunk_alone, chunk_with_save = statistics.median(alone), statistics.median(with_save)
    return {
        "preset": name,
        "chunk_seconds": chunk_alone,
        "chunk_seconds_with_save_in_flight": chunk_with_save,
        "slowdown": chunk_with_save / chunk_alone,
        "save_blocking_seconds": statistics.median(blocking),
        "save_committed_seconds": statistics.median(committed),
        "restore_seconds": statistics.median(restore),
        "checkpoint_bytes": size,
    }


def main(args: Args) -> None:
    rows = [bench_preset(name, args) for name in args.presets]
    table = []
    for r in rows:
        p = r["preset"]
        table += [
            (f"{p}: chunk of {args.updates_per_chunk} updates (ms)", f"{r['chunk_seconds'] * 1e3:.1f}"),
            (f"{p}: same, save in flight (ms)", f"{r['chunk_seconds_with_save_in_flight'] * 1e3:.1f}"),
            (f"{p}: slowdown (goal <= 1.10)", f"{r['slowdown']:.2f}x"),
            (
                f"{p}: save, blocking / committed (s)",
                f"{r['save_blocking_seconds']:.3f} / {r['save_committed_seconds']:.3f}",
            ),
            (f"{p}: restore (s)", f"{r['restore_seconds']:.3f}"),
            (f"{p}: checkpoint size (MiB)", f"{r['checkpoint_bytes'] / 2**20:.2f}"),
        ]
    report.print_table(table, title=f"Checkpoints: medians of {args.repeats} repeats")
    report.write_json(user_path(args.out), {"args": dataclasses.asdict(args), "presets": rows})


if __name__ == "__main__":
    main(tyro.cli(Args))
