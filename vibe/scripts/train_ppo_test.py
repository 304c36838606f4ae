"""The train_ppo command as a user runs it: outputs where they stand, flags, errors."""

import json

import pytest

from vibe.logging.metrics import read_metrics
from vibe.scripts import train_ppo

# A short run: 4 updates of 4 envs × 16 steps of a small network, a greedy evaluation every 2 updates, one
# checkpoint at the end (and one of the best evaluation, if that came earlier).
SHORT = ["--algo.total-timesteps", "256", "--algo.num-steps", "16", "--algo.encoder.hidden-sizes", "32", "32"]
SHORT += ["--eval-episodes", "2", "--eval-every", "2", "--updates-per-chunk", "3", "--checkpoint.save-interval", "4"]
QUIET = ["--wandb-mode", "disabled"]


def test_run_lands_under_the_users_directory_with_metrics_and_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    result = train_ppo.main([*SHORT, "--exp-name", "short", "--algo.lr", "1e-3"])  # wandb offline, the default
    run_dir = tmp_path / "checkpoints" / "cartpole_ppo" / "short"
    assert result.run_dir == str(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"]["lr"] == 1e-3 and config["algo"]["encoder"]["hidden_sizes"] == [32, 32]
    rows = read_metrics(str(run_dir / "metrics.jsonl"))
    # Chunks end on evaluations: 2 updates (not 3), its evaluation row, 2 more, the final evaluation.
    assert [row["step"] for row in rows] == [128, 128, 256, 256]
    assert [row.get("update") for row in rows] == [2, None, 4, None]
    assert {"loss/total", "loss/policy", "loss/value", "loss/entropy", "sps"} <= rows[0].keys()
    assert all(row["eval/episodes"] == 2 for row in rows[1::2])
    assert rows[-1]["eval/return_mean"] == pytest.approx(sum(result.eval_returns) / 2)
    assert (run_dir / "wandb_id.txt").exists() and list((run_dir / "wandb").glob("offline-run-*"))
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The final checkpoint, and the best-evaluated one (the first of the highest returns) kept beside it.
    returns = [row["eval/return_mean"] for row in rows[1::2]]
    best = 2 * (returns.index(max(returns)) + 1)
    assert json.loads((run_dir / "best.json").read_text())["step"] == best
    assert sorted(int(d.name) for d in run_dir.iterdir() if d.name.isdigit()) == sorted({best, 4})


def test_existing_run_directory_is_kept_without_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    train_ppo.main([*SHORT, *QUIET, "--eval-episodes", "0"])
    metrics = tmp_path / "checkpoints" / "cartpole_ppo" / "default" / "metrics.jsonl"
    before = metrics.read_text()
    with pytest.raises(SystemExit) as exit_info:
        train_ppo.main([*SHORT, *QUIET])
    assert exit_info.value.code == 1
    assert metrics.read_text() == before
    train_ppo.main([*SHORT, *QUIET, "--eval-episodes", "0", "--overwrite"])
    assert len(read_metrics(str(metrics))) == 2  # rewritten, not appended


def test_resume_with_nothing_to_resume_exits_with_a_clear_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        train_ppo.main([*SHORT, *QUIET, "--resume"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "[E] nothing to resume" in err and "run without --resume" in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fsdp-devices", "3"], "RunnerConfig.fsdp_devices=3: Number of devices 1 must be divisible"),
        (["--devices", "8"], "RunnerConfig.devices=8 but only 1 device(s) are visible; pass --devices 0"),
        (["--num-processes", "2"], "num_processes=2 needs a coordinator address"),
    ],
)
def test_device_settings_that_do_not_fit_exit_2_naming_the_field(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        train_ppo.main([*SHORT, *QUIET, *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()  # refused before the run directory is touched
