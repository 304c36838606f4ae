"""The checkpoint writer: a separate, low-priority process that writes host copies of a run state with orbax.

Why a process: an in-process async orbax save spends ~100-150 ms of CPU (asyncio, tensorstore, metadata, the
commit) on background threads that compete with the train chunk for a 2-core host and hold the GIL the main
thread needs to dispatch the chunk and to return from it: a 16-update chunk with a save in flight took 1.5×
(PPO CartPole) to 2.2× (DQN CartPole) its time alone. A child process shares no GIL, and at idle priority
(`CheckpointConfig.writer_priority`) it gets only the CPU the training leaves: the chunk with a save in flight
now takes about its time alone (vibe/bench/checkpoint.py).

What crosses over: `WriterProcess.save` copies every array into one anonymous shared-memory file (memfd) that
all saves reuse: that is the synchronous device→host copy, after which the caller may donate its state. It passes
the descriptor over a Unix socket; after the arrays the file holds a pickled header (the trees with `_Slot`s for
arrays, and the assets). The child maps the file, writes an ordinary orbax step (temporary directory, then
rename: a kill mid-save leaves the previous checkpoint as the latest complete one) and answers `(step, error)`.
Orbax spends about 1 ms of CPU per array written on top of ~40 ms per save, so items named `packed` (the manager's
`train_state`, DQN's 40-odd buffer, optimizer and env arrays) go in as one byte array each: ~30% less writer
CPU for DQN CartPole, and so less slowdown of the chunk running beside it (measured, vibe/bench/checkpoint.py).
One save is in flight at a time: the next save, `wait` and `close` wait for it, at most `async_timeout_secs`
from its start, and raise its error.

Lifetime: the child starts with the manager (its ~2 s of imports overlap the caller's compile, at low priority
too) and is killed on `close`, once the save in flight is committed. It also kills itself the moment the parent
process dies (a pidfd), so no orphan keeps writing into a run directory that a resumed run has taken over. Linux
only (memfd, SOCK_SEQPACKET, pidfd).

Its orbax manager lists the steps once; when the parent moves a step aside (`CheckpointManager.move_aside`, an
unreadable one on resume) the next request says `reload`, so the keep policy neither counts nor deletes a step that
is gone. The keep policy also keeps the step named in `best.json`, read at each decision (`vibe.checkpoint.best`).
"""

import contextlib
import dataclasses
import json
import mmap
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Collection
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from vibe.checkpoint import best
from vibe.checkpoint.config import CheckpointConfig

# Steps orbax drops go here by an atomic rename and are deleted afterwards: a kill during a deletion must not
# leave a half-deleted step directory that still looks like a checkpoint.
TRASH_DIR = "_deleted"
# The assets key of the layouts of packed items: {item: [(offset, shape, dtype name) of each leaf]}.
PACKED_LAYOUTS = "packed_layouts"
_MAX_MESSAGE, _MAX_ANSWER = 1 << 12, 1 << 16  # bytes of a request, of an answer
# Runs in the child: its CPU priority before any import (its threads inherit it), then the parent's import path.
# "idle" (SCHED_IDLE) never takes CPU from a runnable thread: with nice 19 a DQN chunk with a save in flight took
# 1.2-1.3× its time alone on an otherwise quiet 2-core host, with SCHED_IDLE 1.0-1.15× (measured). But an idle
# task also yields to every other process: on a host saturated by other work (load 6-8 on 2 cores), a PPO run
# saving every 0.2 s of training waited ~1.7× longer for its saves than with nice 19 ("low").
_BOOT = """
import json, os, signal, sys
spec = json.loads(sys.argv[1])
if spec["config"]["writer_priority"] == "idle":
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
else:
    os.setpriority(os.PRIO_PROCESS, 0, 19)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which then closes this process
sys.path[:] = spec["sys_path"]
from vibe.checkpoint import writer
writer.serve(spec)
"""


def orbax_options(
    config: CheckpointConfig, *, asynchronous: bool, trash: bool, directory: str
) -> ocp.CheckpointManagerOptions:
    """The orbax manager options of run directory `directory` (kept steps, tmp-dir cleanup, async timeout).

    Kept: the latest `max_to_keep`, every `keep_period`-th, and the step named in `best.json` (`best.KeepBest`).
    """
    policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=config.max_to_keep), best.KeepBest(directory)]
    if config.keep_period:
        policies.append(ocp.checkpoint_managers.EveryNSteps(interval_steps=config.keep_period))
    return ocp.CheckpointManagerOptions(
        enable_async_checkpointing=asynchronous,
        async_options=ocp.AsyncOptions(timeout_secs=config.async_timeout_secs),
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        cleanup_tmp_directories=True,  # removes what a killed save left half-written
        todelete_subdir=TRASH_DIR if trash else None,
        create=True,
    )


def empty_trash(directory: str) -> None:
    shutil.rmtree(os.path.join(directory, TRASH_DIR), ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Where one array lies in the shared file."""

    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype


class _SharedBuffer:
    """One anonymous shared-memory file that every save reuses, growing when a state needs more room.

    Writing into pages mapped once is what keeps the copy cheap: a fresh 4 MB file per save (page allocation) made
    the next DQN chunk ~1.3× slower (measured).
    """

    def __init__(self) -> None:
        self.fd, self.size = -1, 0
        self._map: mmap.mmap | None = None

    def reserve(self, size: int) -> mmap.mmap:
        if self._map is None or size > self.size:
            self.close()
            size += size // 8  # room for assets that grow a little
            self.fd = os.memfd_create("vibe-checkpoint", os.MFD_CLOEXEC)
            os.ftruncate(self.fd, size)
            self.size, self._map = size, mmap.mmap(self.fd, size)
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            os.close(self.fd)
        self.fd, self.size, self._map = -1, 0, None


def _on_host(leaf: Any) -> np.ndarray:
    # (np.ascontiguousarray would make scalars 1-d.) On CPU this is a view, not a copy.
    return np.asarray(leaf, order="C")


def _pack(buffer: _SharedBuffer, items: dict[str, Any], assets: Any, packed: Collection[str]) -> tuple[int, int]:
    """Copies `items` (item name → pytree of arrays) and `assets` into `buffer`: `(header offset, size used)`.

    An item named in `packed` goes in as one byte array `{"bytes": ...}`, its leaves back to back; the assets get
    each leaf's `(offset, shape, dtype)` under `PACKED_LAYOUTS[name]`.
    """
    flat = {name: jax.tree.flatten(tree) for name, tree in items.items()}
    for leaves, _ in flat.values():
        for leaf in leaves:
            # All device→host transfers at once, then collect them; on CPU it would only slow the next chunk.
            if isinstance(leaf, jax.Array) and any(d.platform != "cpu" for d in leaf.devices()):
                leaf.copy_to_host_async()
    copies: list[tuple[np.ndarray, int]] = []  # (host array, its offset in the buffer)
    trees: dict[str, Any] = {}
    layouts: dict[str, list[tuple[int, tuple[int, ...], str]]] = {}
    offset = 0
    for name, (leaves, treedef) in flat.items():
        start = offset = _aligned(offset)
        placed = []  # (offset, host array) of this item's leaves
        for leaf in leaves:
            host = _on_host(leaf)
            if name not in packed:
                offset = _aligned(offset)  # 64-byte aligned views in the child
            placed.append((offset, host))
            offset += host.nbytes
        copies += [(host, at) for at, host in placed]
        if name in packed:
            layouts[name] = [(at - start, host.shape, host.dtype.name) for at, host in placed]
            trees[name] = {"bytes": _Slot(start, (offset - start,), np.dtype(np.uint8))}
        else:
            trees[name] = jax.tree.unflatten(treedef, [_Slot(at, host.shape, host.dtype) for at, host in placed])
    header = pickle.dumps({"arrays": trees, "assets": {**assets, PACKED_LAYOUTS: layouts}})
    target = buffer.reserve(offset + len(header))
    for host, start in copies:
        target[start : start + host.nbytes] = host.reshape(-1).view(np.uint8)
    target[offset : offset + len(header)] = header
    return offset, offset + len(header)


def _aligned(offset: int) -> int:
    return -(-offset // 64) * 64


class WriterProcess:
    """Writes the checkpoints of `directory` from a low-priority child process."""

    def __init__(self, directory: str, config: CheckpointConfig) -> None:
        self.directory, self._config = directory, config
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._pending: tuple[int, float] | None = None  # (step, time.monotonic() at its start)
        self._failure: Exception | None = None  # raised by the next wait
        self._reload = False  # the next request tells the child to re-list the steps on disk
        self._buffer = _SharedBuffer()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def pending_step(self) -> int | None:
        """The step of the save in flight (None when there is none)."""
        return self._pending[0] if self.in_flight() and self._pending else None

    def reload(self) -> None:
        """Makes the child re-list the steps on disk before its next save (a step was moved behind its back)."""
        self._reload = True

    def start(self) -> None:
        """Starts the child (if not running): its imports then overlap the caller's compile, not its first save."""
        if self._proc is not None:
            return
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = {
            "fd": child_end.fileno(),
            "parent_pid": os.getpid(),
            "directory": self.directory,
            "config": dataclasses.asdict(self._config),
            "sys_path": sys.path,
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(spec)],
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},  # never touches the accelerator
                # No new session: with autogroup scheduling a session is its own CPU group, and the child's
                # priority would only rank it against itself (measured: 1.7× the chunk time with nice 19).
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self._sock = parent_end

    def save(self, step: int, items: dict[str, Any], assets: Any, packed: Collection[str] = ()) -> None:
        """Copies `items` to host memory, then returns while the child writes them as checkpoint `step`.

        `packed`: items stored as one byte array each (see `_pack`).
        """
        self.wait()
        self.start()
        assert self._sock is not None
        header_offset, size = _pack(self._buffer, items, assets, packed)  # the child is done with it: no save in flight
        try:
            request = {"step": step, "header_offset": header_offset, "size": size, "reload": self._reload}
            socket.send_fds(self._sock, [pickle.dumps(request)], [self._buffer.fd])
        except OSError as e:
            code = self._stop()
            raise RuntimeError(f"the checkpoint writer process of {self.directory} is gone (exit code {code})") from e
        self._pending, self._reload = (step, time.monotonic()), False

    def in_flight(self) -> bool:
        """Whether a save is still being written."""
        if self._pending is not None:
            self._receive(timeout=0.0)
        return self._pending is not None

    def wait(self) -> None:
        """Blocks until the save in flight is committed; raises its error, or TimeoutError past the timeout."""
        if self._pending is not None:
            step, started = self._pending
            if not self._receive(max(0.0, started + self._config.async_timeout_secs - time.monotonic())):
                self._stop()
                raise TimeoutError(
                    f"checkpoint {step} of {self.directory} was not committed within "
                    f"CheckpointConfig.async_timeout_secs={self._config.async_timeout_secs}; the writer was stopped "
                    "(raise the timeout for a slow filesystem or a large state)"
                )
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Waits for the save in flight, then ends the child (which holds nothing unwritten by then)."""
        try:
            self.wait()
        finally:
            self._stop()
            self._buffer.close()

    def _receive(self, timeout: float) -> bool:
        """Takes the answer to the save in flight if it comes within `timeout` s; False if it did not."""
        assert self._pending is not None and self._sock is not None
        if not select.select([self._sock], [], [], timeout)[0]:
            return False
        step, _ = self._pending
        self._pending = None
        try:
            answer = self._sock.recv(_MAX_ANSWER)
        except OSError:
            answer = b""
        if not answer:
            code = self._stop()
            self._failure = RuntimeError(
                f"the checkpoint writer process exited (code {code}) before committing checkpoint {step} "
                f"of {self.directory}; its error, if any, is in the log above"
            )
        elif error := pickle.loads(answer)[1]:
            self._failure = RuntimeError(f"writing checkpoint {step} of {self.directory} failed:\n{error}")
        return True

    def _stop(self) -> int | None:
        """Kills the child unless it has exited; its exit code."""
        code = None
        if self._proc is not None:
            self._proc.kill()  # (a no-op once it has exited: Popen polls first)
            code = self._proc.wait()
        if self._sock is not None:
            self._sock.close()
        self._proc, self._sock, self._pending = None, None, None
        return code


def _exit_with_parent(parent_pid: int) -> None:
    """SIGKILLs this process as soon as `parent_pid` exits."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent_pid)
            if os.getppid() == parent_pid:  # else the parent died before the pidfd was opened
                select.select([fd], [], [])
        finally:
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _write(manager: ocp.CheckpointManager, request: dict[str, Any], fd: int) -> None:
    buffer = mmap.mmap(fd, request["size"], prot=mmap.PROT_READ)
    header = pickle.loads(buffer[request["header_offset"] :])

    def view(slot: _Slot) -> np.ndarray:
        count = int(np.prod(slot.shape, dtype=np.int64))
        return np.frombuffer(buffer, slot.dtype, count, slot.offset).reshape(slot.shape)

    items = jax.tree.map(view, header["arrays"])
    manager.save(
        request["step"],
        args=ocp.args.Composite(
            **{name: ocp.args.StandardSave(tree) for name, tree in items.items()},
            assets=ocp.args.JsonSave(header["assets"]),
        ),
    )
    empty_trash(request["directory"])


def serve(spec: dict[str, Any]) -> None:
    """The child's loop: one save per request until the parent's end of the socket closes."""
    _exit_with_parent(spec["parent_pid"])
    sock = socket.socket(fileno=spec["fd"])
    config = CheckpointConfig(**spec["config"])
    directory = spec["directory"]

    def open_manager() -> ocp.CheckpointManager:  # synchronous: this process is the background
        options = orbax_options(config, asynchronous=False, trash=True, directory=directory)
        return ocp.CheckpointManager(directory, options=options)

    # Made at start, so its threads have come and gone before the first save. The parent may move a step aside
    # meanwhile (an unreadable one, on resume): then its next request says "reload", and a construction that
    # tripped over the move is retried at the first request, which reports its error.
    manager: ocp.CheckpointManager | None = None
    with contextlib.suppress(Exception):
        manager = open_manager()
    try:
        while True:
            message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
            if not message:  # the parent closed its end
                break
            request = pickle.loads(message)
            error = None
            try:
                if manager is None:
                    manager = open_manager()
                elif request.get("reload"):
                    manager.reload()
                _write(manager, {**request, "directory": directory}, fds[0])
            except Exception:
                error = traceback.format_exc()[-_MAX_ANSWER // 16 :]  # its end, well within one datagram
            finally:
                for fd in fds:
                    os.close(fd)
            sock.send(pickle.dumps((request["step"], error)))
    finally:
        if manager is not None:
            manager.close()
