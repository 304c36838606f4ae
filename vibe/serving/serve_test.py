"""The server binary's CLI: flags, and the one-line error for a run dir it cannot serve."""

import os
import pathlib
import subprocess
import sys

import pytest

import vibe
from vibe.serving import serve

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


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError("no checkpoint in /runs/x;\nrun training first"),
        ValueError("checkpoint 7 of /runs/x has no params"),
    ],
)
def test_unusable_run_dir_is_one_line_error(monkeypatch, capsys, error):
    def loader(run_dir, *, step):
        assert step == 7
        raise error

    monkeypatch.setattr(serve, "_create_trained_policy", lambda: loader)
    assert serve.main(serve.Args(serve.PolicyArgs(dir="/runs/x", step="7"))) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: cannot serve /runs/x (step 7): {' '.join(str(error).split())}"]


def test_bad_step_is_one_line_error(tmp_path):
    result = run("--policy.dir", str(tmp_path), "--policy.step", "newest")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve {tmp_path} (step newest): --policy.step 'newest': expected best, latest or a step number"
    ]
