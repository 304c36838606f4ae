"""Offline-RL benchmark: BC and IQL updates/s with the in-memory dataset (sampled inside jit).

    tools/bazelw run //vibe/bench:offline
    tools/bazelw run //vibe/bench:offline -- --frames 1000000 --updates 2000 --out /tmp/offline.json

Each row builds the preset's algorithm on synthetic arrays shaped like its dataset (``--frames`` frames:
CartPole's 4 floats and a discrete action, Pendulum's 3 floats, a 1-D torque, rewards, s'), then compiles
the runner's train chunk with the dataset as a non-donated argument (what ``vibe.train.runner`` does) and
times ``--updates`` updates after compile. The ``closed over`` row compiles the same BC chunk with the
dataset as a constant instead, the choice the runner avoids: on jax 0.11.2 the array is embedded in the
program (its HLO text grows by about twice the dataset's bytes) and compiles slower.

Reported per row: compile seconds, updates/s and samples/s after compile, HLO text size. JAX-CORL's IQL
does about 1.8k updates/s (batch 256, 2x256 networks) on a GPU.

Measured 2026-12-01 on the 2-core box under load 8-9 (other jobs running), 1M frames: cartpole_bc 336,
pendulum_bc 363, pendulum_iql 78 updates/s (batch 256; compile 2.7-4.7 s). With 5M CartPole frames
(~105 MB): as an argument compile 3.3 s, HLO 0.08 MB, peak RSS 0.82 GB; closed over compile 5.9 s,
HLO 200 MB, peak RSS 1.43 GB, and no faster per update (448 against 518 updates/s).
"""

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from vibe.algorithms.bc.bc import BC
from vibe.algorithms.bc.config import BCConfig
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.iql.iql import IQL
from vibe.bench import report
from vibe.config import presets
from vibe.core.usage import bazel_prog
from vibe.envs import registry, spaces
from vibe.train.loop import make_train_chunk
from vibe.train.runner import user_path


@dataclasses.dataclass(frozen=True)
class Args:
    frames: int = 1_000_000  # dataset frames (1M CartPole frames: ~20 MB of observations and actions)
    updates: int = 1_000  # updates timed after compile, in chunks of --chunk
    chunk: int = 100  # updates per jitted call (the runner's --updates-per-chunk)
    out: str = ""  # JSON output (default bench_results/offline.json), relative to where the command runs


def synthetic(algorithm_env: str, frames: int, transitions: bool) -> dict[str, np.ndarray]:
    """Arrays shaped as ``bc.data.load`` returns them for a dataset of ``algorithm_env``."""
    env, params = registry.make(algorithm_env)
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(frames, *obs_space.shape)).astype(np.float32)
    if isinstance(action_space, spaces.Discrete):
        action = rng.integers(0, action_space.n, size=(frames, 1)).astype(np.int32)
    else:
        action = rng.uniform(-1, 1, size=(frames, 1, *action_space.shape)).astype(np.float32)
    data = {"obs": obs, "action": action, "action_is_pad": np.zeros((frames, 1), bool)}
    if transitions:
        data |= {
            "next_obs": np.roll(obs, -1, 0),
            "reward": rng.normal(size=frames).astype(np.float32),
            "terminated": np.zeros(frames, bool),
            "rows": np.arange(frames, dtype=np.int32),
        }
    return data


def build(preset: str, frames: int) -> Any:
    config = presets.get(preset)
    env, params = registry.make(config.env)
    iql = isinstance(config.algo, IQLConfig)
    data = synthetic(config.env, frames, iql)
    record: Any = IQL if iql else BC
    assert isinstance(config.algo, BCConfig | IQLConfig)
    return record.make(config.algo, env, params, env_id=config.env, data=data)


def measure(algorithm: Any, args: Args, *, closed_over: bool) -> dict[str, Any]:
    """Compile and time the chunk: dataset as an argument (the runner's way) or as a closed-over constant."""
    state = algorithm.init(jax.random.PRNGKey(0))
    k = jnp.int32(args.chunk)
    start = time.perf_counter()
    if closed_over:
        placed = dataclasses.replace(algorithm, data=jax.device_put(algorithm.data))
        lowered = make_train_chunk(placed.train_step).lower(state, k)
        data_args: tuple[Any, ...] = ()
    else:

        def step(state: Any, data: Any) -> Any:
            return dataclasses.replace(algorithm, data=data).train_step(state)

        data_args = (jax.device_put(algorithm.data),)
        lowered = make_train_chunk(step, data_shardings=None).lower(state, k, *data_args)
    hlo_bytes = len(lowered.as_text())
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    state, _ = compiled(state, k, *data_args)  # warm-up call
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(max(1, args.updates // args.chunk)):
        state, _ = compiled(state, k, *data_args)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    updates = max(1, args.updates // args.chunk) * args.chunk
    batch = algorithm.config.data.batch_size
    return {
        "compile_seconds": compile_seconds,
        "updates_per_second": updates / seconds,
        "samples_per_second": updates * batch / seconds,
        "hlo_megabytes": hlo_bytes / 1e6,
        "batch_size": batch,
    }


def main(args: Args) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for preset in ("cartpole_bc", "pendulum_bc", "pendulum_iql"):
        rows[preset] = measure(build(preset, args.frames), args, closed_over=False)
    rows["cartpole_bc (dataset closed over)"] = measure(build("cartpole_bc", args.frames), args, closed_over=True)
    table = [
        (
            name,
            f"compile {r['compile_seconds']:5.1f} s  {r['updates_per_second']:8,.0f} updates/s  "
            f"{r['samples_per_second']:10,.0f} samples/s  HLO {r['hlo_megabytes']:7.2f} MB",
        )
        for name, r in rows.items()
    ]
    report.print_table(
        table, f"Offline updates after compile ({args.frames:,} frames in memory, chunks of {args.chunk})"
    )
    report.write_json(
        user_path(args.out or "bench_results/offline.json"), {"args": dataclasses.asdict(args), "rows": rows}
    )


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
