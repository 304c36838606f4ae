"""Checkpoint benchmark: the cost of a save in flight, save/restore seconds, checkpoint size.

    tools/bazelw run //vibe/bench:checkpoint
    tools/bazelw run //vibe/bench:checkpoint -- --presets cartpole_ppo --repeats 5

For each preset's default run state, after a warm-up past any learning start:

- a train chunk (same length each time) after the host copied the state, as
  any save must before returning, and one right after an async save (goal:
  ≤ 1.1×); the table says in how many repeats the save was still in flight
  when that chunk ended. Also against a chunk right after another one (no
  host work between: a warmer start than any chunk after a save gets);
- amortised: one whole save interval of the preset's default run (about ten
  saves per run), its chunks with no save against the same chunks after a
  save, until that save is committed (the runner's next save waits for it);
- the blocking part of a save (the host copy), the time until it is
  committed, the time to restore the latest checkpoint, and its size on disk;
- the floor: the same chunk next to a process that only spins at the writer's
  priority. On a 2-vCPU VM any CPU use on the other core slows the chunk, even
  at SCHED_IDLE (which never takes a core from a runnable thread); a writer
  that is busy during the whole chunk cannot beat this row.

Medians over repeats; prints a table and writes JSON. Other processes on the
host add noise: rerun when in doubt.
"""

import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from vibe.bench import report
from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint.config import CheckpointConfig
from vibe.config import presets
from vibe.core.usage import bazel_prog
from vibe.scripts import training
from vibe.train.loop import make_train_chunk
from vibe.train.runner import user_path


@dataclasses.dataclass(frozen=True)
class Args:
    presets: tuple[str, ...] = ("cartpole_ppo", "cartpole_dqn")  # runs whose state is saved
    updates_per_chunk: int = 16  # updates in the timed chunk
    warmup_updates: int = 256  # updates before timing (DQN/SAC: past learning_starts, so the chunks train)
    repeats: int = 21  # timed repetitions of the chunk pair (medians are reported)
    interval_repeats: int = 5  # timed repetitions of the save interval, with and without a save
    writer_priority: Literal["idle", "low"] = "idle"  # CheckpointConfig.writer_priority
    out: str = "bench_results/checkpoint.json"  # JSON output, relative to where the command runs


# A busy loop at the writer's priority (what `writer._BOOT` sets), for the floor row.
_SPINNER = """
import os, sys
if sys.argv[1] == "idle":
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
else:
    os.setpriority(os.PRIO_PROCESS, 0, 19)
while True:
    pass
"""


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def bench_preset(name: str, args: Args) -> dict:
    algorithm = training.make_algorithm(presets.get(name))
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(0))
    chunk = make_train_chunk(algorithm.train_step).lower(state, jnp.int32(args.updates_per_chunk)).compile()
    state, _ = chunk(state, jnp.int32(args.warmup_updates))
    jax.block_until_ready(state)
    interval = CheckpointConfig().interval(algorithm.num_updates)
    interval_chunks = [min(args.updates_per_chunk, interval - u) for u in range(0, interval, args.updates_per_chunk)]

    def run(sizes: list[int]) -> float:
        """Seconds of chunks of `sizes` updates, each synced like the runner's."""
        nonlocal state
        t0 = time.perf_counter()
        for k in sizes:
            state, metrics = chunk(state, jnp.int32(k))
            jax.block_until_ready(metrics)
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as root:
        manager, _ = checkpoints.initialize_checkpoint_dir(
            os.path.join(root, "run"),
            config=CheckpointConfig(max_to_keep=2, writer_priority=args.writer_priority),
            overwrite=False,
            resume=False,
        )
        step = 1
        checkpoints.save(manager, step, state, {"preset": name})  # starts the writer
        manager.wait_until_finished()
        alone, back_to_back, with_save, in_flight, blocking, committed, restore = [], [], [], [], [], [], []
        spinning = []
        for _ in range(args.repeats):
            # Chunks as in the runner, then: a chunk right after one, one after the host copied the state (what
            # any save has to do before the state may be donated; the same gap before the chunk, as a chunk
            # after a pause runs colder), and one after a save that is still in flight.
            run([args.updates_per_chunk] * 2)
            back_to_back.append(run([args.updates_per_chunk]))
            jax.tree.map(lambda x: np.array(x, copy=True), state)
            alone.append(run([args.updates_per_chunk]))
            step += 1
            t0 = time.perf_counter()
            checkpoints.save(manager, step, state, {"preset": name})
            blocking.append(time.perf_counter() - t0)
            with_save.append(run([args.updates_per_chunk]))
            in_flight.append(manager.is_saving_in_progress())
            manager.wait_until_finished()
            committed.append(time.perf_counter() - t0)
            spinner = subprocess.Popen([sys.executable, "-c", _SPINNER, args.writer_priority])
            try:
                time.sleep(0.05)  # started and spinning
                spinning.append(run([args.updates_per_chunk]))
            finally:
                spinner.kill()
                spinner.wait()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            checkpoints.restore(manager, jax.eval_shape(lambda s: s, state))
            restore.append(time.perf_counter() - t0)

        interval_alone, interval_with_save = [], []
        for i in range(2 * args.interval_repeats):  # alternating, as the load of a shared host drifts
            if i % 2:
                interval_alone.append(run(interval_chunks))
                continue
            step += 1
            t0 = time.perf_counter()
            checkpoints.save(manager, step, state, {"preset": name})
            run(interval_chunks)
            manager.wait_until_finished()  # where the runner's next save would wait
            interval_with_save.append(time.perf_counter() - t0)
        size = directory_bytes(os.path.join(root, "run", str(manager.latest_step())))
        manager.close()
    chunk_alone, chunk_with_save = statistics.median(alone), statistics.median(with_save)
    return {
        "preset": name,
        "chunk_seconds": chunk_alone,
        "chunk_seconds_back_to_back": statistics.median(back_to_back),
        "chunk_seconds_with_save_in_flight": chunk_with_save,
        "slowdown": chunk_with_save / chunk_alone,
        "chunk_seconds_next_to_busy_loop": statistics.median(spinning),
        "floor_slowdown": statistics.median(spinning) / chunk_alone,
        "saves_in_flight_at_chunk_end": sum(in_flight),
        "interval_updates": interval,
        "interval_seconds": statistics.median(interval_alone),
        "interval_seconds_with_save": statistics.median(interval_with_save),
        "amortised_slowdown": statistics.median(interval_with_save) / statistics.median(interval_alone),
        "save_blocking_seconds": statistics.median(blocking),
        "save_committed_seconds": statistics.median(committed),
        "restore_seconds": statistics.median(restore),
        "checkpoint_bytes": size,
        "samples": {
            "chunk_seconds": alone,
            "chunk_seconds_back_to_back": back_to_back,
            "chunk_seconds_with_save_in_flight": with_save,
            "chunk_seconds_next_to_busy_loop": spinning,
            "interval_seconds": interval_alone,
            "interval_seconds_with_save": interval_with_save,
        },
    }


def main(args: Args) -> None:
    rows = [bench_preset(name, args) for name in args.presets]
    table = []
    for r in rows:
        p, n = r["preset"], args.repeats
        table += [
            (
                f"{p}: chunk of {args.updates_per_chunk} updates (ms), after a host copy / after a chunk",
                f"{r['chunk_seconds'] * 1e3:.1f} / {r['chunk_seconds_back_to_back'] * 1e3:.1f}",
            ),
            (
                f"{p}: same, save in flight (ms)",
                f"{r['chunk_seconds_with_save_in_flight'] * 1e3:.1f} (still in flight at its end: "
                f"{r['saves_in_flight_at_chunk_end']}/{n})",
            ),
            (f"{p}: slowdown vs after a host copy (goal <= 1.10)", f"{r['slowdown']:.2f}x"),
            (
                f"{p}: floor: same chunk next to a busy loop at the writer's priority",
                f"{r['chunk_seconds_next_to_busy_loop'] * 1e3:.1f} ms, {r['floor_slowdown']:.2f}x",
            ),
            (
                f"{p}: slowdown vs after a chunk",
                f"{r['chunk_seconds_with_save_in_flight'] / r['chunk_seconds_back_to_back']:.2f}x",
            ),
            (
                f"{p}: save interval of {r['interval_updates']} updates (s), without / with a save",
                f"{r['interval_seconds']:.3f} / {r['interval_seconds_with_save']:.3f}",
            ),
            (f"{p}: amortised slowdown over the interval", f"{r['amortised_slowdown']:.3f}x"),
            (
                f"{p}: save, blocking / committed (s)",
                f"{r['save_blocking_seconds']:.3f} / {r['save_committed_seconds']:.3f}",
            ),
            (f"{p}: restore (s)", f"{r['restore_seconds']:.3f}"),
            (f"{p}: checkpoint size (MiB)", f"{r['checkpoint_bytes'] / 2**20:.2f}"),
        ]
    title = (
        f"Checkpoints: medians of {args.repeats} repeats (save interval: {args.interval_repeats}), "
        f"writer priority {args.writer_priority}"
    )
    report.print_table(table, title=title)
    report.write_json(user_path(args.out), {"args": dataclasses.asdict(args), "presets": rows})


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
