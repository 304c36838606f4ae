"""ruff (lint and format) and mypy over the repository's Python sources."""

import os
import subprocess
import sys

PYTHON_DIRS = ["vibe", "tests", "tools"]


def run(*args: str) -> subprocess.CompletedProcess:
    cache = os.environ.get("TEST_TMPDIR", "/tmp")
    env = {**os.environ, "RUFF_CACHE_DIR": os.path.join(cache, "ruff"), "MYPY_CACHE_DIR": os.path.join(cache, "mypy")}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env)


def test_ruff_lint():
    result = run("ruff", "check", "--no-cache", *PYTHON_DIRS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run("ruff", "format", "--check", "--no-cache", *PYTHON_DIRS)
    assert result.returncode == 0, "run `ruff format` on:\n" + result.stdout + result.stderr


def test_mypy():
    result = run("mypy", "vibe")
    assert result.returncode == 0, result.stdout + result.stderr
