"""Training through the runner on two local processes × 2 CPU devices equals one process × 4 devices.

Each worker runs the `train` CLI's code path (`vibe.scripts.training.train`)
with `--coordinator-address/--num-processes/--process-id`; both write into one
run directory (a shared filesystem in a real cluster). Only process 0 writes
the config and metrics. Run directly, this file is the worker.
"""

import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from vibe.sharding import distributed

TIMEOUT_S = 240


def worker(output_dir: str, exp_name: str, coordinator: str, num_processes: int, process_id: int) -> None:
    import jax

    from vibe.algorithms.ppo.config import PPOConfig
    from vibe.checkpoint.config import CheckpointConfig
    from vibe.config.train_config import TrainConfig
    from vibe.scripts import training
    from vibe.train.config import RunnerConfig

    config = TrainConfig(
        name="ppo",
        env="CartPole-v1",
        algo=PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4, hidden_sizes=(32, 32)),
        runner=RunnerConfig(
            output_dir=output_dir,
            exp_name=exp_name,
            updates_per_chunk=2,
            eval_episodes=4,
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
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], devices: int) -> subprocess.Popen:
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
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def results(procs: list[subprocess.Popen]) -> list[dict[str, Any]]:
    outputs, deadline = [], time.monotonic() + TIMEOUT_S
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


def test_two_processes_train_like_one_process_with_four_devices(tmp_path: Any) -> None:
    coordinator = f"127.0.0.1:{free_port()}"
    out = str(tmp_path)
    # The reference first: the machine has 2 cores, and three JAX processes at once only slow each other.
    (single,) = results([launch([out, "single", "", "1", "0"], devices=4)])
    two = results([launch([out, "multi", coordinator, "2", str(i)], devices=2) for i in range(2)])

    assert single["devices"] == single["mesh_size"] == 4
    for i, r in enumerate(two):
        assert (r["process_index"], r["devices"], r["mesh_size"]) == (i, 4, 4)
        for name, expected in single["params"].items():
            np.testing.assert_allclose(r["params"][name], expected, rtol=0, atol=1e-5, err_msg=name)
        assert r["eval"] == two[0]["eval"]
    # One metrics file, written by process 0 alone: one row per chunk and one evaluation row.
    with open(tmp_path / "ppo" / "multi" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [row["step"] for row in rows] == [128, 256, 256]
    assert (tmp_path / "ppo" / "multi" / "config.json").exists()
    # Both processes saved into the one directory: the final update's checkpoint is the one kept.
    assert [d for d in os.listdir(tmp_path / "ppo" / "multi") if d.isdigit()] == ["4"]


if __name__ == "__main__":
    _, output_dir, exp_name, coordinator, num_processes, process_id = sys.argv
    worker(output_dir, exp_name, coordinator, int(num_processes), int(process_id))
