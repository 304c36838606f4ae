"""Checkpoint directory rules, the kept set, and exact round trips."""

import logging
import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint import writer
from vibe.checkpoint.config import CheckpointConfig


@flax.struct.dataclass
class State:
    params: dict
    opt: dict
    key: jax.Array
    step: jax.Array


def make_state(seed: int) -> State:
    key = jax.random.PRNGKey(seed)
    return State(
        params={"w": jax.random.normal(key, (3, 4)), "b": jnp.arange(4.0)},
        opt={"mu": jnp.full((3, 4), 0.5), "count": jnp.int32(seed)},
        key=jax.random.split(key)[0],
        step=jnp.int32(seed),
    )


def open_dir(path, **flags):
    return checkpoints.initialize_checkpoint_dir(str(path), config=CheckpointConfig(**flags.pop("config", {})), **flags)


def test_existing_directory_without_flags_is_refused_and_untouched(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="pass --resume to continue that run or --overwrite"):
        open_dir(run, overwrite=False, resume=False)
    assert (run / "metrics.jsonl").read_text() == "{}\n"


def test_resume_and_overwrite_together_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="cannot --resume and --overwrite"):
        open_dir(tmp_path / "run", overwrite=True, resume=True)


def test_resume_without_a_directory_says_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        open_dir(tmp_path / "missing", overwrite=False, resume=True)


def test_resume_without_a_complete_checkpoint_starts_fresh_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    with caplog.at_level(logging.WARNING):
        manager, resuming = open_dir(run, overwrite=False, resume=True)
    assert not resuming
    assert "does not contain a complete checkpoint" in caplog.text
    manager.close()


def test_overwrite_wipes_the_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "old.txt").write_text("x")
    manager, resuming = open_dir(run, overwrite=True, resume=False)
    assert not resuming and not (run / "old.txt").exists()
    manager.close()


def test_round_trip_is_exact_and_params_load_without_vibe(tmp_path):
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False)
    state = make_state(3)
    checkpoints.save(manager, 7, state, {"config": {"lr": 0.1}})
    manager.wait_until_finished()
    step, restored = checkpoints.restore(manager, jax.eval_shape(lambda: make_state(0)))
    assert step == 7
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and isinstance(b, jax.Array)
    assert checkpoints.restore_assets(manager)["config"] == {"lr": 0.1}
    manager.close()
    # The params item is a plain orbax PyTree checkpoint.
    params = ocp.StandardCheckpointer().restore(os.path.join(tmp_path, "run", "7", "params"))
    np.testing.assert_array_equal(params["w"], state.params["w"])


def test_train_state_is_one_byte_array_and_a_changed_shape_is_named(tmp_path):
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False)
    checkpoints.save(manager, 1, make_state(3), {})
    manager.close()
    saved = ocp.StandardCheckpointer().restore(os.path.join(tmp_path, "run", "1", "train_state"))
    assert list(saved) == ["bytes"] and saved["bytes"].dtype == np.uint8
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=True)
    wider = jax.eval_shape(lambda: make_state(0).replace(key=jnp.zeros(3, jnp.uint32)))
    with pytest.raises(ValueError, match=r"holds train_state\.key as uint32\[2\], but this config builds uint32\[3\]"):
        checkpoints.restore(manager, wider)
    manager.close()


def test_resume_finds_the_latest_checkpoint(tmp_path):
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False)
    for step in (1, 2):
        checkpoints.save(manager, step, make_state(step), {})
    manager.close()
    manager, resuming = open_dir(tmp_path / "run", overwrite=False, resume=True)
    step, restored = checkpoints.restore(manager, jax.eval_shape(lambda: make_state(0)))
    assert resuming and step == 2 and int(restored.step) == 2
    manager.close()


def test_keep_period_keeps_multiples_forever_besides_the_latest(tmp_path):
    config = {"max_to_keep": 2, "keep_period": 4}
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False, config=config)
    for step in range(1, 11):
        checkpoints.save(manager, step, make_state(step), {})
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [4, 8, 9, 10]
    manager.close()
    assert sorted(int(d) for d in os.listdir(tmp_path / "run") if d.isdigit()) == [4, 8, 9, 10]
    assert not (tmp_path / "run" / writer.TRASH_DIR).exists()  # dropped steps are renamed there, then deleted


def test_a_step_left_half_deleted_by_a_killed_save_is_removed_on_resume(tmp_path):
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False)
    checkpoints.save(manager, 1, make_state(1), {})
    manager.close()
    half_deleted = tmp_path / "run" / writer.TRASH_DIR / "0" / "params"
    half_deleted.mkdir(parents=True)
    manager, resuming = open_dir(tmp_path / "run", overwrite=False, resume=True)
    assert resuming and manager.all_steps() == [1]
    assert not (tmp_path / "run" / writer.TRASH_DIR).exists()
    manager.close()


def test_save_copies_so_the_caller_may_donate_the_state(tmp_path):
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False)
    state = make_state(5)
    expected = np.asarray(state.params["w"]).copy()
    checkpoints.save(manager, 1, state, {})
    # Donate the live buffers while the save may still be in flight.
    jax.jit(lambda s: jax.tree.map(lambda x: x * 0, s), donate_argnums=0)(state)
    manager.wait_until_finished()
    _, restored = checkpoints.restore(manager, jax.eval_shape(lambda: make_state(0)))
    np.testing.assert_array_equal(restored.params["w"], expected)
    manager.close()


def test_the_in_process_save_used_under_several_processes_round_trips(tmp_path):
    manager, _ = open_dir(tmp_path / "run", overwrite=False, resume=False)
    manager._writer.close()
    manager._writer = None  # what a multi-process run gets: orbax's own async save in this process
    state = make_state(4)
    checkpoints.save(manager, 3, state, {})
    jax.jit(lambda s: jax.tree.map(lambda x: x * 0, s), donate_argnums=0)(state)  # donated while in flight
    manager.wait_until_finished()
    step, restored = checkpoints.restore(manager, jax.eval_shape(lambda: make_state(0)))
    assert step == 3 and int(restored.step) == 4
    np.testing.assert_array_equal(restored.params["w"], make_state(4).params["w"])
    manager.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("save_interval", -1),
        ("max_to_keep", 0),
        ("keep_period", -2),
        ("async_timeout_secs", 0),
        ("writer_priority", "high"),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"CheckpointConfig.{field}={value!r}"):
        CheckpointConfig(**{field: value})
