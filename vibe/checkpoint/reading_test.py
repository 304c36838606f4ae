"""Reading checkpoints: params and assets alone, required asset fields, and unreadable newest checkpoints."""

import logging
import os
import shutil

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint import reading
from vibe.checkpoint.config import CheckpointConfig


@flax.struct.dataclass
class State:
    """DQN-like: small params, a replay buffer many times their size in the rest of the state."""

    params: dict
    target: dict
    buffer: jax.Array
    key: jax.Array
    step: jax.Array


def make_state(seed: int) -> State:
    key = jax.random.PRNGKey(seed)
    params = {"w": jax.random.normal(key, (64, 32)), "b": jnp.arange(32.0) + seed}
    # Random, so that the data files hold it uncompressed: the largest file of train_state is the buffer's.
    buffer = jax.random.normal(jax.random.fold_in(key, 1), (512, 64))
    return State(params=params, target=params, buffer=buffer, key=key, step=jnp.int32(seed))


ABSTRACT = jax.eval_shape(lambda: make_state(0))
ASSETS = {"config": {"lr": 0.1, "env": {"name": "CartPole-v1"}}}


def write_run(path, steps, **config) -> str:
    manager, _ = checkpoints.initialize_checkpoint_dir(
        str(path), config=CheckpointConfig(**{"max_to_keep": 3, **config}), overwrite=False, resume=False
    )
    for step in steps:
        checkpoints.save(manager, step, make_state(step), ASSETS)
    manager.close()
    return str(path)


def resume(path) -> checkpoints.CheckpointManager:
    return checkpoints.initialize_checkpoint_dir(
        str(path), config=CheckpointConfig(max_to_keep=3), overwrite=False, resume=True
    )[0]


def truncate_largest_file(directory: str) -> str:
    """Cuts the largest data file (tensorstore's, under a `d/` folder) under `directory` in half; else the largest."""
    files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
    data = [file for file in files if os.path.basename(os.path.dirname(file)) == "d"]
    largest = max(data or files, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)
    return largest


def snapshot(directory: str) -> dict[str, tuple[int, int]]:
    """Every path under `directory` with its size and mtime."""
    found = {}
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            stat = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), directory)] = (stat.st_size, stat.st_mtime_ns)
    return found


def children() -> set[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(pid) for pid in f.read().split())
    return pids


def test_restore_params_reads_params_and_assets_but_never_train_state(tmp_path):
    run = write_run(tmp_path / "run", [1, 2])
    for step in (1, 2):  # train_state gone: a replay buffer restore_params must not need
        shutil.rmtree(os.path.join(run, str(step), "train_state"))
    before, processes = snapshot(run), children()
    step, params, assets = checkpoints.restore_params(run)
    assert step == 2 and assets["config"] == ASSETS["config"]
    for key, want in make_state(2).params.items():  # numpy arrays, as the checkpoint's metadata describes them
        assert isinstance(params[key], np.ndarray) and params[key].dtype == want.dtype
        np.testing.assert_array_equal(params[key], want)
    step, params, _ = checkpoints.restore_params(run, 1, ABSTRACT.params)
    assert step == 1 and isinstance(params["w"], jax.Array)
    np.testing.assert_array_equal(params["w"], make_state(1).params["w"])
    # A directory path is read-only: nothing created, changed or deleted, and no writer process.
    assert snapshot(run) == before and children() == processes


def test_restore_params_through_a_manager_while_the_run_goes_on(tmp_path):
    manager, _ = checkpoints.initialize_checkpoint_dir(
        str(tmp_path / "run"), config=CheckpointConfig(), overwrite=False, resume=False
    )
    checkpoints.save(manager, 3, make_state(3), ASSETS)
    manager.wait_until_finished()
    step, params, _ = checkpoints.restore_params(manager, "latest", ABSTRACT.params)
    assert step == 3
    np.testing.assert_array_equal(params["b"], make_state(3).params["b"])
    manager.close()


def test_steps_that_do_not_exist_are_named(tmp_path):
    run = write_run(tmp_path / "run", [1, 2])
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 7 in .*run; its steps are \[1, 2\]"):
        checkpoints.restore_params(run, 7)
    with pytest.raises(FileNotFoundError, match=r"no best checkpoint recorded in .*run: .*best\.json does not exist"):
        checkpoints.restore_params(run, "best")
    with pytest.raises(ValueError, match=r"step='newest': pass a step number, 'latest' or 'best'"):
        checkpoints.restore_params(run, "newest")
    with pytest.raises(FileNotFoundError, match=r"checkpoint directory .*missing does not exist"):
        checkpoints.restore_params(tmp_path / "missing")


def test_params_of_another_shape_are_a_layout_mismatch(tmp_path):
    run = write_run(tmp_path / "run", [1])
    wider = {**ABSTRACT.params, "w": jax.ShapeDtypeStruct((64, 33), jnp.float32)}
    with pytest.raises(
        checkpoints.LayoutMismatchError,
        match=r"holds params/w as float32\[64, 32\], but this config builds float32\[64, 33\]",
    ):
        checkpoints.restore_params(run, 1, wider)
    renamed = {"kernel": ABSTRACT.params["w"], "b": ABSTRACT.params["b"]}
    with pytest.raises(
        checkpoints.LayoutMismatchError, match=r"holds params \['w'\] where this config builds \['kernel'\]"
    ):
        checkpoints.restore_params(run, 1, renamed)


def test_required_assets_name_the_missing_field_and_the_file(tmp_path):
    run = write_run(tmp_path / "run", [1])
    assert checkpoints.read_assets(run, 1, required=["config.env.name"])["config"]["lr"] == 0.1
    file = os.path.join(run, "1", "assets", "metadata")
    assert os.path.isfile(file)
    with pytest.raises(
        ValueError,
        match=rf"^{file} has no field 'env_spec' \(fields: config, packed_layouts, .*\); checkpoint 1 was written",
    ) as error:
        checkpoints.read_assets(run, 1, required=["config", "env_spec"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"has no field 'config.env.id'"):
        checkpoints.restore_params(run, require=["config.env.id"])


@pytest.mark.parametrize("item", ["train_state", "params", "assets"])
def test_an_unreadable_newest_checkpoint_is_moved_aside_and_the_one_before_restores(tmp_path, caplog, item):
    run = write_run(tmp_path / "run", [1, 2, 3])
    truncate_largest_file(os.path.join(run, "3", item))
    manager = resume(run)
    with caplog.at_level(logging.WARNING, logger=reading.__name__):
        step, state = checkpoints.restore(manager, ABSTRACT)
    assert step == 2 and int(state.step) == 2
    np.testing.assert_array_equal(state.buffer, make_state(2).buffer)
    # One warning line naming the step and why; the step is under _broken/, whole, and not a step any more.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"checkpoint 3 of {run} is unreadable (")
    assert "\n" not in warnings[0] and f"moved it to {run}/_broken/3-" in warnings[0]
    (broken,) = os.listdir(os.path.join(run, checkpoints.BROKEN_DIR))
    assert broken.startswith("3-") and os.path.isdir(os.path.join(run, "_broken", broken, item))
    assert not os.path.exists(os.path.join(run, "3")) and manager.all_steps() == [1, 2]
    # The writer process re-lists the steps: step 3 saves again, and the keep policy counts what is on disk.
    for step in (3, 4):
        checkpoints.save(manager, step, make_state(step), ASSETS)
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [2, 3, 4]
    assert checkpoints.restore(manager, ABSTRACT)[0] == 4
    manager.close()
    assert os.listdir(os.path.join(run, "_broken")) == [broken]


def test_with_no_readable_checkpoint_nothing_is_moved_and_one_line_names_the_directory(tmp_path):
    run = write_run(tmp_path / "run", [1, 2])
    for step in (1, 2):
        truncate_largest_file(os.path.join(run, str(step), "train_state"))
    manager = resume(run)
    with pytest.raises(
        FileNotFoundError, match=rf"^no readable checkpoint in {run}: steps \[2, 1\] all failed"
    ) as error:
        checkpoints.restore(manager, ABSTRACT)
    assert "\n" not in str(error.value) and "nothing was moved" in str(error.value)
    assert manager.all_steps() == [1, 2] and not os.path.exists(os.path.join(run, "_broken"))
    manager.close()


def test_another_layout_is_no_corruption_and_moves_nothing(tmp_path):
    run = write_run(tmp_path / "run", [1, 2])
    manager = resume(run)
    other = jax.eval_shape(lambda: make_state(0).replace(target=None))  # e.g. another algorithm's state
    with pytest.raises(checkpoints.LayoutMismatchError, match="holds a different run state layout"):
        checkpoints.restore(manager, other)
    assert manager.all_steps() == [1, 2] and not os.path.exists(os.path.join(run, "_broken"))
    manager.close()


def test_a_reader_falls_back_without_moving_anything(tmp_path, caplog):
    run = write_run(tmp_path / "run", [1, 2])
    truncate_largest_file(os.path.join(run, "2", "params"))
    before = snapshot(run)
    with caplog.at_level(logging.WARNING, logger=reading.__name__):
        step, _, _ = checkpoints.restore_params(run)
        assert checkpoints.restore(run, ABSTRACT)[0] == 1
    assert step == 1 and "checkpoint 2 of" in caplog.text and "reading 1 instead" in caplog.text
    assert snapshot(run) == before
    with pytest.raises(ValueError, match=r"^checkpoint 2 in .*run is unreadable \(.*\); pass another step"):
        checkpoints.restore_params(run, 2)


def test_a_step_moved_aside_under_a_running_writer_is_forgotten_by_its_keep_policy(tmp_path):
    manager, _ = checkpoints.initialize_checkpoint_dir(
        str(tmp_path / "run"), config=CheckpointConfig(max_to_keep=2), overwrite=False, resume=False
    )
    for step in (1, 2):
        checkpoints.save(manager, step, make_state(step), ASSETS)
    manager.wait_until_finished()  # the writer process has listed steps 1 and 2
    where = manager.move_aside(2)
    assert where.startswith(str(tmp_path / "run" / "_broken" / "2-")) and os.path.isdir(os.path.join(where, "params"))
    for step in (2, 3):  # step 2 again: the writer must not think it exists, nor count it for max_to_keep
        checkpoints.save(manager, step, make_state(step), ASSETS)
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [2, 3]
    manager.close()
