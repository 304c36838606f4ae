"""Two local processes × 2 CPU devices each run one program over the 4 global devices.

Each process feeds its half of a global batch with
`make_array_from_process_local_data`; a jitted reduction over the (4, 1)
mesh (and a loss with an FSDP-split kernel over a (2, 2) mesh, whose halves
live in different processes) must print the same value in both processes,
equal to the one-process computation over the whole batch. Loopback only;
every wait is bounded. Run directly, this file is the worker.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.sharding import distributed, fsdp
from vibe.sharding import mesh as mesh_lib

NUM_PROCESSES = 2
LOCAL_DEVICES = 2
BATCH, FEATURES, HIDDEN = 8, 16, 32
TIMEOUT_S = 120


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one_process() -> None:
    coordinator = f"127.0.0.1:{free_port()}"
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={LOCAL_DEVICES}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),  # the parent's imports (the repo, bazel's runfiles)
    )
    for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV, distributed.PROCESS_ID_ENV):
        env.pop(name, None)
    # Process 0 gets its arguments on the command line, process 1 through the environment.
    commands = [[coordinator, "0"], ["env", "1"]]
    envs = [
        env,
        dict(
            env,
            **{
                distributed.COORDINATOR_ENV: coordinator,
                distributed.NUM_PROCESSES_ENV: str(NUM_PROCESSES),
                distributed.PROCESS_ID_ENV: "1",
            },
        ),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *command],
            env=process_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command, process_env in zip(commands, envs, strict=True)
    ]
    outputs = []
    deadline = time.monotonic() + TIMEOUT_S  # one bound for both processes
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append(stdout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for i, (p, stdout) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{stdout}"
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert len(lines) == 1, f"process {i} printed no result:\n{stdout}"
        results.append(json.loads(lines[0].removeprefix("RESULT ")))

    x, w = problem()
    expected_sum = float(jax.jit(batch_sum)(x))
    expected_loss = float(jax.jit(loss)(w, x))
    for i, r in enumerate(results):
        assert r["joined"] and r["process_index"] == i and r["primary"] == (i == 0)
        assert (r["devices"], r["local_devices"]) == (NUM_PROCESSES * LOCAL_DEVICES, LOCAL_DEVICES)
        assert r["collectives"] == "gloo"  # the pinned JAX's default; nothing in vibe sets it
        assert r["mesh"] == {mesh_lib.BATCH_AXIS: 4, mesh_lib.FSDP_AXIS: 1}
        assert r["w_spec"] == [None, mesh_lib.FSDP_AXIS]
        np.testing.assert_allclose(r["sum"], expected_sum, rtol=1e-6)
        np.testing.assert_allclose(r["loss"], expected_loss, rtol=1e-6)
    assert results[0]["sum"] == results[1]["sum"] and results[0]["loss"] == results[1]["loss"]


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


if __name__ == "__main__":
    worker(None if sys.argv[1] == "env" else sys.argv[1], int(sys.argv[2]))
