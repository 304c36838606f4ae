"""Multi-process (multi-host) start-up: one Python process per host, all running the same program.

Each process calls `initialize` before anything touches a JAX device:

    # host 0                                          # host 1
    initialize("10.0.0.1:1234", 2, 0)                 initialize("10.0.0.1:1234", 2, 1)

or sets `VIBE_COORDINATOR_ADDRESS`, `VIBE_NUM_PROCESSES`, `VIBE_PROCESS_ID` and
calls `initialize()`. Afterwards `jax.devices()` lists every process's devices,
`make_mesh` spans them all, and each process feeds its own rows of a batch with
`jax.make_array_from_process_local_data(data_sharding(mesh), local_rows)`.
Only the primary process (`is_primary()`) writes config, assets and logs.

CPU collectives: with JAX 0.11.2, `jax_cpu_collectives_implementation`
defaults to "gloo" (TCP, via the coordinator's key-value store), so
multi-process runs on CPU-only hosts need no setting. Verified with two local
processes × 2 emulated CPU devices each (tests/multihost_test.py). With the
setting cleared (`jax.config.update("jax_cpu_collectives_implementation",
None)`, the default of older JAX) the first cross-process computation fails
with "Multiprocess computations aren't implemented on the CPU backend".
`JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi` selects MPI instead. GPUs use NCCL;
nothing here changes that.
"""

import logging
import os

import jax

logger = logging.getLogger(__name__)

COORDINATOR_ENV = "VIBE_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "VIBE_NUM_PROCESSES"
PROCESS_ID_ENV = "VIBE_PROCESS_ID"

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
) -> bool:
    """Joins this process to a multi-process JAX run; returns whether it did.

    Arguments left as None come from `VIBE_COORDINATOR_ADDRESS` ("host:port" of
    process 0, reachable from every process), `VIBE_NUM_PROCESSES` and
    `VIBE_PROCESS_ID`. Without a coordinator address this is a no-op (one
    process). With one, `num_processes`/`process_id` may stay None only where
    JAX detects them from the cluster (SLURM, Open MPI). A loopback coordinator
    binds to loopback only, so a local multi-process run opens no outside
    port. Waits up to `timeout_s` seconds for all processes to connect.

    Must run before any JAX computation or device query (JAX raises otherwise).
    """
    coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV) or None
    num_processes = _env_int(NUM_PROCESSES_ENV) if num_processes is None else num_processes
    process_id = _env_int(PROCESS_ID_ENV) if process_id is None else process_id
    if coordinator_address is None:
        if num_processes not in (None, 1):
            raise ValueError(
                f"num_processes={num_processes} needs a coordinator address: pass it or set {COORDINATOR_ENV} "
                "to host:port of process 0"
            )
        return False
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes={num_processes} must be at least 1")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must be in [0, {num_processes}) for num_processes={num_processes}")
    host = coordinator_address.rsplit(":", 1)[0]
    bind_address = coordinator_address if host in _LOOPBACK_HOSTS else None
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
        coordinator_bind_address=bind_address,
    )
    logger.info(
        "Process %d of %d joined %s: %d local of %d global devices",
        jax.process_index(),
        jax.process_count(),
        coordinator_address,
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def is_primary() -> bool:
    """Whether this is process 0, the one that writes config, assets and logs (always true with one process)."""
    return jax.process_index() == 0
