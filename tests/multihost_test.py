"""Two local processes × 2 CPU devices each run one program over the 4 global devices.

Each process feeds its half of a global batch with
`make_array_from_process_local_data`; a jitted reduction over the (4, 1)
mesh (and a loss with an FSDP-split kernel over a (2, 2) mesh, whose halves
live in different processes) must print the same value in both processes,
equal to the one-process computation over the whole batch. Then training
through the runner (`vibe.scripts.training.train` with the multi-host flags,
both processes writing into one run directory, only process 0 logging) must
give the parameters of one process × 4 devices. Loopback only; every wait is
bounded. Run directly, this file is the worker.
"""

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.sharding import distributed, fsdp
from vibe.sharding import mesh as mesh_lib

NUM_PROCESSES = 2
LOCAL_DEVICES = 2
BATCH, FEATURES, HIDDEN = 8, 16, 32
# Generous: both workers import JAX, join and compile while other test targets load the same 2 cores (a run
# next to //tests:multigpu once took over 120 s). Only a hang waits this long.
TIMEOUT_S = 300
TRAIN_TIMEOUT_S = 300  # a training worker compiles and trains: minutes on a loaded 2-core machine


def problem() -> tuple[np.ndarray, np.ndarray]:
    """The global batch [BATCH, FEATURES] and kernel [FEATURES, HIDDEN], identical in every process."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
    w = rng.normal(size=(FEATURES, HIDDEN)).astype(np.float32)
    return x, w


def batch_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


def loss(w: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.mean(jnp.tanh(x @ w) ** 2)


def worker(coordinator: str | None, process_id: int) -> None:
    """`coordinator` None: the process joins through the VIBE_* environment variables."""
    if coordinator is None:
        joined = distributed.initialize(timeout_s=TIMEOUT_S)
    else:
        joined = distributed.initialize(coordinator, NUM_PROCESSES, process_id, timeout_s=TIMEOUT_S)
    x, w = problem()
    rows = BATCH // NUM_PROCESSES
    local_x = x[process_id * rows : (process_id + 1) * rows]  # this process's rows of the global batch
    out = {
        "joined": joined,
        "process_index": jax.process_index(),
        "primary": distributed.is_primary(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "collectives": jax.config.jax_cpu_collectives_implementation,
    }

    mesh = mesh_lib.make_mesh(1)  # (4, 1): pure data parallelism over both processes
    out["mesh"] = dict(mesh.shape)
    global_x = jax.make_array_from_process_local_data(mesh_lib.data_sharding(mesh), local_x)
    total = jax.jit(batch_sum, out_shardings=mesh_lib.replicated(mesh))(global_x)
    out["sum"] = float(total)

    mesh = mesh_lib.make_mesh(2)  # (2, 2): the kernel's halves live on devices of different processes
    w_sharding = fsdp.fsdp_sharding(jax.ShapeDtypeStruct(w.shape, w.dtype), mesh, min_size_mbytes=0)
    global_w = jax.make_array_from_callback(w.shape, w_sharding, lambda index: w[index])
    global_x = jax.make_array_from_process_local_data(mesh_lib.data_sharding(mesh), local_x)
    value = jax.jit(loss, out_shardings=mesh_lib.replicated(mesh))(global_w, global_x)
    out["w_spec"] = list(w_sharding.spec)
    out["loss"] = float(value)
    print("RESULT " + json.dumps(out), flush=True)


def train_worker(output_dir: str, exp_name: str, coordinator: str, num_processes: int, process_id: int) -> None:
    import jax

    from vibe.algorithms.ppo.config import PPOConfig
    from vibe.checkpoint.config import CheckpointConfig
    from vibe.config.train_config import TrainConfig
    from vibe.networks.config import EncoderConfig
    from vibe.scripts import training
    from vibe.train.config import RunnerConfig

    config = TrainConfig(
        name="ppo",
        env="CartPole-v1",
        algo=PPOConfig(
            num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4, encoder=EncoderConfig(hidden_sizes=(32, 32))
        ),
        runner=RunnerConfig(
            output_dir=output_dir,
            exp_name=exp_name,
            updates_per_chunk=2,
            eval_episodes=4,
            eval_every=2,
            wandb_mode="disabled",
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            checkpoint=CheckpointConfig(save_interval=2),
        ),
    )
    result = training.train(config)
    params = {
        jax.tree_util.keystr(p): np.asarray(x).tolist()
        for p, x in jax.tree_util.tree_flatten_with_path(result.state.params)[0]
    }
    out = {
        "process_index": jax.process_index(),
        "devices": jax.device_count(),
        "mesh_size": result.state.obs.sharding.mesh.size,
        "eval": np.asarray(result.eval_returns).tolist(),
        "params": params,
    }
    print("RESULT " + json.dumps(out), flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], devices: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """This file as a worker process with `devices` CPU devices and the parent's imports."""
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),  # the parent's imports (the repo, bazel's runfiles)
    )
    for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV, distributed.PROCESS_ID_ENV):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        env={**env, **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def results(procs: list[subprocess.Popen], timeout_s: float) -> list[dict[str, Any]]:
    """Each worker's RESULT line, parsed; one time bound for all of them, stragglers killed."""
    outputs, deadline = [], time.monotonic() + timeout_s
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    parsed = []
    for i, (p, stdout) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{stdout}"
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert len(lines) == 1, f"process {i} printed no result:\n{stdout}"
        parsed.append(json.loads(lines[0].removeprefix("RESULT ")))
    return parsed


def test_two_processes_agree_with_one_process() -> None:
    coordinator = f"127.0.0.1:{free_port()}"
    # Process 0 gets its arguments on the command line, process 1 through the environment.
    joined_by_env = {
        distributed.COORDINATOR_ENV: coordinator,
        distributed.NUM_PROCESSES_ENV: str(NUM_PROCESSES),
        distributed.PROCESS_ID_ENV: "1",
    }
    procs = [launch([coordinator, "0"], LOCAL_DEVICES), launch(["env", "1"], LOCAL_DEVICES, joined_by_env)]
    results_ = results(procs, TIMEOUT_S)

    x, w = problem()
    expected_sum = float(jax.jit(batch_sum)(x))
    expected_loss = float(jax.jit(loss)(w, x))
    for i, r in enumerate(results_):
        assert r["joined"] and r["process_index"] == i and r["primary"] == (i == 0)
        assert (r["devices"], r["local_devices"]) == (NUM_PROCESSES * LOCAL_DEVICES, LOCAL_DEVICES)
        assert r["collectives"] == "gloo"  # the pinned JAX's default; nothing in vibe sets it
        assert r["mesh"] == {mesh_lib.BATCH_AXIS: 4, mesh_lib.FSDP_AXIS: 1}
        assert r["w_spec"] == [None, mesh_lib.FSDP_AXIS]
        np.testing.assert_allclose(r["sum"], expected_sum, rtol=1e-6)
        np.testing.assert_allclose(r["loss"], expected_loss, rtol=1e-6)
    assert results_[0]["sum"] == results_[1]["sum"] and results_[0]["loss"] == results_[1]["loss"]


def test_one_process_needs_no_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV, distributed.PROCESS_ID_ENV):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() is False
    assert distributed.initialize(None, 1, 0) is False
    assert distributed.is_primary()


def test_initialize_errors_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(distributed.COORDINATOR_ENV, raising=False)
    with pytest.raises(ValueError, match=r"num_processes=2 needs a coordinator address.*VIBE_COORDINATOR_ADDRESS"):
        distributed.initialize(None, 2, 0)
    with pytest.raises(ValueError, match=r"process_id=2 must be in \[0, 2\)"):
        distributed.initialize("127.0.0.1:1", 2, 2)
    monkeypatch.setenv(distributed.NUM_PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match="VIBE_NUM_PROCESSES='two' is not an integer"):
        distributed.initialize()


def test_two_processes_train_like_one_process_with_four_devices(tmp_path: Any) -> None:
    coordinator = f"127.0.0.1:{free_port()}"
    out = str(tmp_path)
    # The reference first: the machine has 2 cores, and three JAX processes at once only slow each other.
    (single,) = results([launch(["train", out, "single", "", "1", "0"], 4)], TRAIN_TIMEOUT_S)
    two = results([launch(["train", out, "multi", coordinator, "2", str(i)], 2) for i in range(2)], TRAIN_TIMEOUT_S)

    assert single["devices"] == single["mesh_size"] == 4
    for i, r in enumerate(two):
        assert (r["process_index"], r["devices"], r["mesh_size"]) == (i, 4, 4)
        for name, expected in single["params"].items():
            np.testing.assert_allclose(r["params"][name], expected, rtol=0, atol=1e-5, err_msg=name)
        assert r["eval"] == two[0]["eval"]
    # One metrics file, written by process 0 alone: one row per chunk, each followed by its evaluation.
    run_dir = tmp_path / "ppo" / "multi"
    with open(run_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [row["step"] for row in rows] == [128, 128, 256, 256]
    assert [("update" in row, "eval/return_mean" in row) for row in rows] == [(True, False), (False, True)] * 2
    assert rows[-1]["eval/return_mean"] == pytest.approx(np.mean(two[0]["eval"]))
    assert (run_dir / "config.json").exists()
    # Both processes saved into the one directory: the final update's checkpoint, and the best-evaluated one
    # (the first of the highest returns), recorded once in best.json.
    evals = [row["eval/return_mean"] for row in rows[1::2]]
    best_update = 2 * (evals.index(max(evals)) + 1)
    with open(run_dir / "best.json") as f:
        assert json.load(f)["step"] == best_update
    assert sorted(d for d in os.listdir(run_dir) if d.isdigit()) == sorted({"4", str(best_update)})


if __name__ == "__main__":
    if sys.argv[1] == "train":
        _, _, output_dir, exp_name, coordinator, num_processes, process_id = sys.argv
        train_worker(output_dir, exp_name, coordinator, int(num_processes), int(process_id))
    else:
        worker(None if sys.argv[1] == "env" else sys.argv[1], int(sys.argv[2]))
