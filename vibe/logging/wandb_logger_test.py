import glob
import json
import logging
import os
import pathlib
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from vibe.logging import wandb_logger
from vibe.logging.wandb_logger import WandbLogger


@pytest.fixture(scope="module", autouse=True)
def hermetic_wandb(tmp_path_factory):
    """wandb's own directories (and its service process's) point into a temp dir; no network."""
    home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(home / var.lower()))
        mp.setenv("WANDB_MODE", "offline")  # a safety net: the tests pass mode= themselves
        mp.delenv("WANDB_API_KEY", raising=False)
        yield
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()  # stops the service process this module started


def read_history(wandb_file: str, timeout: float = 30.0) -> dict[int, dict]:
    """{step: {key: value}} from a finished offline run's `.wandb` file.

    `run.finish()` returns before wandb's service process has written the file
    (it is complete by the time the Python process exits), so this waits for
    the run's exit record.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows, finished = _scan(wandb_file)
        if finished:
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"{wandb_file} has no exit record after {timeout} s")
        time.sleep(0.05)


def _scan(wandb_file: str) -> tuple[dict[int, dict], bool]:
    """The history rows of a `.wandb` file so far, and whether its exit record is there.

    The file is a LevelDB-style log (wandb's datastore): a 7-byte header
    (":W&B", magic, version), then 32 KiB blocks of records, each with a
    (crc32, length, type) header, a record split over blocks as FIRST/MIDDLE/LAST.
    wandb 0.31 has no Python reader for it any more.
    """
    from wandb.proto import wandb_internal_pb2

    data = pathlib.Path(wandb_file).read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, rows, finished = 32768, 7, b"", {}, False
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            finished |= record.WhichOneof("record_type") == "exit"
            if record.WhichOneof("record_type") == "history":
                row = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                rows[record.history.step.num] = {k: v for k, v in row.items() if not k.startswith("_")}
    return rows, finished


def offline_runs(run_dir) -> list[str]:
    return sorted(glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb")))


def test_explicit_steps_land_in_the_run_and_backward_steps_are_dropped(tmp_path, caplog):
    run_dir = str(tmp_path / "cartpole_ppo" / "default")
    with WandbLogger.open(run_dir, config={"lr": 3e-4}) as wb:
        assert wb.log(1024, {"episode/return_mean": np.float32(21.5), "loss/total": 0.25})
        assert wb.log(1024, {"eval/return_mean": 30.0, "skipped": None})  # same step: merged into its row
        with caplog.at_level(logging.WARNING):
            assert not wb.log(512, {"episode/return_mean": 99.0})
        assert "dropped metrics at step 512, below the last logged step 1024" in caplog.text
        assert wb.log(2048, {"episode/return_mean": 40.0})
    (path,) = offline_runs(run_dir)
    assert read_history(path) == {
        1024: {"episode/return_mean": 21.5, "loss/total": 0.25, "eval/return_mean": 30.0},
        2048: {"episode/return_mean": 40.0},
    }


def test_resume_reuses_the_stored_id_and_continues_the_env_steps(tmp_path):
    run_dir = str(tmp_path / "run")
    with WandbLogger.open(run_dir) as first:
        first.log(100, {"x": 1.0})
    stored = (tmp_path / "run" / "wandb_id.txt").read_text().strip()
    assert stored == first.id and len(stored) == 8

    with WandbLogger.open(run_dir, resuming=True) as second:
        assert second.id == stored
        second.log(200, {"x": 2.0})
    # Offline wandb starts a second directory with the same id; the steps go on from vibe's.
    runs = offline_runs(run_dir)
    assert len(runs) == 2 and all(path.endswith(f"run-{stored}.wandb") for path in runs)
    # (Directory names have one-second timestamps, so their order says nothing.)
    assert sorted((read_history(path) for path in runs), key=min) == [{100: {"x": 1.0}}, {200: {"x": 2.0}}]

    with WandbLogger.open(run_dir, resuming=False) as fresh:  # a fresh run gets a fresh id
        assert fresh.id != stored
    assert (tmp_path / "run" / "wandb_id.txt").read_text().strip() == fresh.id


def test_resume_without_an_id_file_starts_a_new_id_and_writes_it(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        new_id = wandb_logger.run_id(str(tmp_path), resuming=True)
    assert "No " + str(tmp_path / "wandb_id.txt") in caplog.text
    assert (tmp_path / "wandb_id.txt").read_text() == new_id + "\n"
    assert wandb_logger.run_id(str(tmp_path), resuming=True) == new_id


def test_disabled_is_a_no_op_that_never_imports_wandb(tmp_path):
    script = f"""
import sys
import time
from vibe.logging.wandb_logger import WandbLogger
wb = WandbLogger.open({str(tmp_path)!r}, mode="disabled", config={{"a": 1}}, resuming=True)
assert not wb.enabled and wb.id is None and not wb.log(1, {{"x": 1.0}})
wb.close()
print("wandb imported:", "wandb" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "wandb imported: False"
    assert os.listdir(tmp_path) == []  # no id file, no wandb directory


def test_unknown_mode_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"mode='dryrun' is not one of \('offline', 'online', 'disabled'\)"):
        WandbLogger.open(str(tmp_path), mode="dryrun")  # type: ignore[arg-type]
