"""The server binary's CLI: flags, and the one-line error for a run dir it cannot serve."""

import os
import pathlib
import subprocess
import sys

import vibe

ROOT = pathlib.Path(vibe.__file__).parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vibe.serving.serve", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_the_flags():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--policy.dir", "--policy.step", "--host", "--port", "--api-key", "--max-batch", "--max-wait-ms"):
        assert flag in result.stdout, flag
    assert "--max-frame-mb" in result.stdout


def test_run_dir_without_a_checkpoint_is_one_line_error(tmp_path):
    result = run("--policy.dir", str(tmp_path / "no_such_run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot serve "), result.stderr
    assert "no_such_run" in lines[0]


def test_bad_step_is_one_line_error(tmp_path):
    result = run("--policy.dir", str(tmp_path), "--policy.step", "newest")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve {tmp_path} (step newest): --policy.step 'newest': expected best, latest or a step number"
    ]
