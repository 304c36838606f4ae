"""The best checkpoint: recorded in best.json, kept by the keep policy, read back after a resume."""

import json
import logging
import os
import types

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.checkpoint import best
from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint.config import CheckpointConfig


@flax.struct.dataclass
class State:
    params: dict
    step: jax.Array


def make_state(seed: int) -> State:
    return State(params={"w": jnp.full((3, 4), float(seed))}, step=jnp.int32(seed))


def open_dir(path, resume=False, in_process=False, **config) -> checkpoints.CheckpointManager:
    manager, _ = checkpoints.initialize_checkpoint_dir(
        str(path), config=CheckpointConfig(**config), overwrite=False, resume=resume
    )
    if in_process:  # what a multi-process run gets: orbax's own async save in this process
        manager._writer.close()
        manager._writer = None
    return manager


def save(manager, *steps):
    for step in steps:
        checkpoints.save(manager, step, make_state(step), {})
    manager.wait_until_finished()


def on_disk(run) -> list[int]:
    return sorted(int(name) for name in os.listdir(run) if name.isdigit())


@pytest.mark.parametrize("in_process", [False, True], ids=["writer_process", "in_process"])
def test_the_best_step_outlives_the_keep_policy_and_a_resume(tmp_path, in_process):
    run = tmp_path / "run"
    config = {"max_to_keep": 1, "keep_period": 4}
    manager = open_dir(run, in_process=in_process, **config)
    save(manager, 1)
    manager.mark_best(1, "eval/return", 200.0)
    save(manager, 2, 3, 4, 5, 6)
    assert sorted(manager.all_steps()) == on_disk(run) == [1, 4, 6]  # best, every 4th, the latest
    manager.close()

    manager = open_dir(run, resume=True, in_process=in_process, **config)
    assert manager.best_step() == 1 == checkpoints.best_step(str(run))
    assert checkpoints.best_record(str(run))["value"] == 200.0
    save(manager, 7)
    assert on_disk(run) == [1, 4, 7]
    step, params, _ = checkpoints.restore_params(str(run), "best")
    assert step == 1
    np.testing.assert_array_equal(params["w"], make_state(1).params["w"])
    # A new best: the old one is an ordinary step again, dropped at the next save.
    manager.mark_best(7, "eval/return", 480.0)
    save(manager, 9)
    assert on_disk(run) == [4, 7, 9] and checkpoints.restore_params(manager, "best")[0] == 7
    manager.close()


def test_the_step_whose_save_is_in_flight_can_be_marked(tmp_path):
    manager = open_dir(tmp_path / "run", max_to_keep=1)
    checkpoints.save(manager, 1, make_state(1), {})
    manager.mark_best(1, "eval/return", 10.0)  # typically still being written
    save(manager, 2, 3)
    assert on_disk(tmp_path / "run") == [1, 3]
    manager.close()


def test_a_step_that_is_gone_cannot_be_marked(tmp_path):
    manager = open_dir(tmp_path / "run", max_to_keep=1)
    save(manager, 1, 2)
    with pytest.raises(ValueError, match=r"cannot mark checkpoint 1 best: .*run holds no step 1 \(steps: \[2\]\)"):
        manager.mark_best(1, "eval/return", 1.0)
    # Marking an older step while a newer save is in flight waits for that save, whose keep policy dropped it.
    checkpoints.save(manager, 3, make_state(3), {})
    with pytest.raises(ValueError, match="holds no step 2"):
        manager.mark_best(2, "eval/return", 1.0)
    with pytest.raises(ValueError, match=r"eval/return=nan is not a finite number"):
        manager.mark_best(3, "eval/return", float("nan"))
    assert manager.best_step() is None and not os.path.exists(best.path(str(tmp_path / "run")))
    manager.close()


def test_best_json_is_one_small_record_written_by_rename(tmp_path):
    directory = str(tmp_path)
    best.write(directory, 5, "eval/return", 1.5)
    best.write(directory, 6, "eval/return", 2.5)
    assert os.listdir(directory) == ["best.json"]  # no temporary file left
    record = json.loads((tmp_path / "best.json").read_text())
    assert record["step"] == 6 and record["metric"] == "eval/return" and record["value"] == 2.5


def test_an_unreadable_best_json_is_named_and_keeps_every_step(tmp_path, caplog):
    (tmp_path / "best.json").write_text('{"step": ')
    with pytest.raises(ValueError, match=rf"^{tmp_path}/best.json is unreadable .*; delete it to forget"):
        checkpoints.best_step(str(tmp_path))
    infos = [types.SimpleNamespace(step=s) for s in (1, 2, 3)]
    with caplog.at_level(logging.WARNING):
        assert best.KeepBest(str(tmp_path)).should_preserve(infos, context=None) == [True] * 3
    assert "keeping every checkpoint until it is fixed" in caplog.text
    best.write(str(tmp_path), 2, "eval/return", 0.0)
    assert best.KeepBest(str(tmp_path)).should_preserve(infos, context=None) == [False, True, False]
