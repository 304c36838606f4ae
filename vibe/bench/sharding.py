"""Benchmark P6: PPO CartPole on 1, 2 and 4 emulated CPU devices, the same global batch.

    tools/bazelw run //vibe/bench:sharding
    tools/bazelw run //vibe/bench:sharding -- --envs 8 --repeats 9 --out /tmp/p6.json

One CPU split into 4 XLA devices shares the same cores, so this measures the
overhead of the sharded program (partitioning, collectives between devices),
not a speed-up. Rows: steps/s of a chunk of updates on each mesh, and the
1-device sharded path (jit with explicit in/out shardings on a 1-device mesh,
what the runner runs) against the plain unsharded jit; goal within 5 %.
Chunks of the paths are interleaved and medians reported, since the machine
is shared and noisy.
"""

import os

# Before JAX starts: 4 host devices (an XLA_FLAGS the caller set wins).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import dataclasses
import statistics
import time
from typing import Any, cast

import jax
import numpy as np
import tyro

from vibe.bench import report
from vibe.config import presets
from vibe.core.usage import bazel_prog
from vibe.scripts import training
from vibe.sharding import fsdp
from vibe.sharding import mesh as mesh_lib
from vibe.train.loop import make_train_chunk
from vibe.train.runner import user_path


@dataclasses.dataclass(frozen=True)
class Args:
    envs: int = 4  # CartPole envs of the global batch (divisible by 4 so every device steps some)
    updates: int = 32  # updates per timed chunk
    repeats: int = 7  # timed chunks per path (after one warm-up chunk)
    out: str = ""  # JSON output (default bench_results/P6.json), relative to where the command runs


@dataclasses.dataclass
class Path:
    """One way of running the chunk: its compiled executable, its state, its timings."""

    compiled: Any
    state: Any
    compile_seconds: float
    seconds: list[float] = dataclasses.field(default_factory=list)

    def run(self, updates: int) -> float:
        start = time.perf_counter()
        self.state, totals = self.compiled(self.state, np.int32(updates))
        jax.block_until_ready((self.state, totals))
        return time.perf_counter() - start


def sharded_path(algorithm: Any, devices: int, updates: int) -> Path:
    """The chunk on a `devices`-device mesh, built as the runner builds it."""
    mesh = mesh_lib.make_mesh(1, jax.devices()[:devices])
    key = jax.random.PRNGKey(0)
    abstract = jax.eval_shape(algorithm.init, key)
    shardings = fsdp.state_shardings(abstract, mesh, algorithm.roles(abstract))
    with mesh_lib.set_mesh(mesh):
        state = jax.jit(algorithm.init, out_shardings=shardings)(key)
        start = time.perf_counter()
        chunk = make_train_chunk(algorithm.train_step, shardings, mesh_lib.replicated(mesh))
        compiled = chunk.lower(state, np.int32(updates)).compile()
    return Path(compiled, state, time.perf_counter() - start)


def plain_path(algorithm: Any, updates: int) -> Path:
    """The same chunk jitted without any sharding (one default device)."""
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(0))
    start = time.perf_counter()
    compiled = make_train_chunk(algorithm.train_step).lower(state, np.int32(updates)).compile()
    return Path(compiled, state, time.perf_counter() - start)


def main(args: Args) -> None:
    if jax.device_count() < 4:
        raise SystemExit(f"P6 needs 4 devices, found {jax.device_count()}; unset XLA_FLAGS or add 4 host devices")
    config = presets.get("cartpole_ppo")
    config = dataclasses.replace(config, algo=dataclasses.replace(cast(Any, config.algo), num_envs=args.envs))
    algorithm = training.make_algorithm(config)
    steps = args.updates * algorithm.steps_per_update

    paths = {"unsharded jit": plain_path(algorithm, args.updates)}
    for devices in (1, 2, 4):
        paths[f"{devices} device(s)"] = sharded_path(algorithm, devices, args.updates)
    for path in paths.values():
        path.run(args.updates)  # warm-up: the first call of an executable pays one-time costs
    for _ in range(args.repeats):
        for path in paths.values():  # interleaved: drifts in machine load hit every path alike
            path.seconds.append(path.run(args.updates))

    # Same global batch, same seed: every path ends with the same parameters (up to reduction order).
    reference = jax.tree.leaves(paths["unsharded jit"].state.params)
    max_diff = {
        name: max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree.leaves(path.state.params), reference, strict=True)
        )
        for name, path in paths.items()
    }
    sps = {name: steps / statistics.median(path.seconds) for name, path in paths.items()}
    ratio = sps["1 device(s)"] / sps["unsharded jit"]
    rows = [
        (
            f"{name}: steps/s (median) | compile s | max |Δparams|",
            f"{sps[name]:,.0f} | {path.compile_seconds:.1f} | {max_diff[name]:.1e}",
        )
        for name, path in paths.items()
    ]
    rows.append(("1-device sharded / unsharded steps/s (goal >= 0.95)", f"{ratio:.3f}"))
    report.print_table(
        rows,
        title=f"P6 cartpole_ppo, {args.envs} envs, {args.updates}-update chunks × {args.repeats}, "
        "emulated CPU devices (overhead, not speed-up)",
    )
    payload = {
        "protocol": "P6",
        "args": dataclasses.asdict(args),
        "steps_per_second_median": sps,
        "compile_seconds": {name: path.compile_seconds for name, path in paths.items()},
        "chunk_seconds": {name: path.seconds for name, path in paths.items()},
        "max_abs_param_diff_vs_unsharded": max_diff,
        "one_device_sharded_over_unsharded": ratio,
    }
    report.write_json(user_path(args.out or "bench_results/P6.json"), payload)


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
