"""The writer process: lowest priority, in-flight state, timeout, error propagation, death with its parent."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint import writer
from vibe.checkpoint.config import CheckpointConfig


@flax.struct.dataclass
class State:
    params: dict
    step: jax.Array


def make_state(seed: int) -> State:
    return State(params={"w": jnp.full((3, 4), float(seed))}, step=jnp.int32(seed))


def open_dir(path, **config):
    return checkpoints.initialize_checkpoint_dir(
        str(path), config=CheckpointConfig(**config), overwrite=False, resume=False
    )[0]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("priority", ["idle", "low"])
def test_every_thread_of_the_writer_runs_at_the_configured_priority(tmp_path, priority):
    manager = open_dir(tmp_path / "run", writer_priority=priority)
    checkpoints.save(manager, 1, make_state(1), {})
    manager.wait_until_finished()
    pid = manager._writer.pid
    threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    assert len(threads) > 1  # orbax's and tensorstore's threads too
    if priority == "idle":
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_IDLE}
    else:
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_OTHER}
        assert {os.getpriority(os.PRIO_PROCESS, tid) for tid in threads} == {19}
    manager.close()
    assert not alive(pid)


def test_a_stalled_save_stays_in_flight_then_times_out_and_the_next_save_starts_a_new_writer(tmp_path):
    config = CheckpointConfig(max_to_keep=2)
    manager = open_dir(tmp_path / "run", max_to_keep=2)
    checkpoints.save(manager, 1, make_state(1), {})  # starts the writer (its imports count towards the timeout)
    manager.wait_until_finished()
    manager._writer._config = dataclasses.replace(config, async_timeout_secs=1)
    stalled = manager._writer.pid
    os.kill(stalled, signal.SIGSTOP)
    checkpoints.save(manager, 2, make_state(2), {})
    assert manager.is_saving_in_progress() and manager.latest_step() == 1
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="async_timeout_secs=1"):
        manager.wait_until_finished()
    assert 0.9 < time.monotonic() - start < 30
    assert not alive(stalled)
    manager._writer._config = config
    checkpoints.save(manager, 3, make_state(3), {})
    manager.wait_until_finished()
    assert manager._writer.pid != stalled and sorted(manager.all_steps()) == [1, 3]
    manager.close()


def test_a_failed_save_raises_on_the_next_wait_and_the_writer_goes_on(tmp_path):
    manager = open_dir(tmp_path / "run", max_to_keep=3)
    checkpoints.save(manager, 1, make_state(1), {})
    manager.save(2, {"params": {"w": np.zeros((0,), np.float32)}, "train_state": {"00000": np.ones(2)}}, {})
    with pytest.raises(RuntimeError, match=r"(?s)writing checkpoint 2 .* failed:.*Cannot save arrays with zero size"):
        manager.wait_until_finished()
    checkpoints.save(manager, 3, make_state(3), {})
    manager.close()
    assert sorted(manager.all_steps()) == [1, 3]


def test_the_writer_dies_with_its_parent(tmp_path):
    script = f"""
import os, signal
from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint.config import CheckpointConfig
import numpy as np
manager, _ = checkpoints.initialize_checkpoint_dir({str(tmp_path / "run")!r}, config=CheckpointConfig(),
                                                  overwrite=False, resume=False)
manager.save(1, {{"params": {{"w": np.ones(3)}}, "train_state": {{"00000": np.int32(1)}}}}, {{}})
manager.wait_until_finished()
print(manager._writer.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert proc.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_pack_lays_out_every_dtype_and_shape_for_the_child():
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": jnp.ones(3, jnp.bfloat16)}
    train_state = {"00000": np.int32(7), "00001": jnp.array([1, 2], jnp.uint32), "00002": jnp.array(True)}
    buffer = writer._SharedBuffer()
    items = {"params": params, "train_state": train_state}
    header_offset, size = writer._pack(buffer, items, {"x": 1}, packed=("train_state",))
    assert size <= buffer.size
    written = {}

    class Manager:  # records what the child hands to orbax
        def save(self, step, args):
            written.update(step=step, args=args)

    request = {"step": 5, "size": size, "header_offset": header_offset, "directory": "/nonexistent"}
    writer._write(Manager(), request, buffer.fd)
    args = written["args"]
    assert written["step"] == 5 and args.assets.item["x"] == 1
    for key, value in params.items():  # one array per leaf
        saved = args.params.item[key]
        assert saved.shape == np.shape(value) and saved.dtype == np.asarray(value).dtype
        np.testing.assert_array_equal(saved, np.asarray(value))
    # The packed item: one byte array, the leaves back to back in key order, and their layout in the assets.
    packed = args.train_state.item["bytes"]
    hosts = [np.asarray(train_state[key]) for key in sorted(train_state)]
    assert packed.dtype == np.uint8 and packed.tobytes() == b"".join(h.tobytes() for h in hosts)
    offsets = np.cumsum([0] + [h.nbytes for h in hosts[:-1]]).tolist()
    expected = [(o, h.shape, h.dtype.name) for o, h in zip(offsets, hosts, strict=True)]
    assert args.assets.item[writer.PACKED_LAYOUTS] == {"train_state": expected}
    buffer.close()
