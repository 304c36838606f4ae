"""Regenerates the hashed lock from requirements.in in a couple of seconds.

    tools/bazelw run //tools/python:lock

uv resolves and hashes against PyPI for Python 3.12 on x86-64 manylinux
(pip-compile gives the same lock but needs ~11 minutes here). Writes
requirements_lock.txt in the workspace; the next build installs a new venv.
"""

import os
import subprocess
import sys
import sysconfig


def main() -> int:
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if not workspace:
        print("error: run this with `tools/bazelw run //tools/python:lock`", file=sys.stderr)
        return 2
    uv = os.path.join(sysconfig.get_path("scripts"), "uv")
    cmd = [
        uv, "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
        "--python-version", "3.12", "--python-platform", "x86_64-manylinux_2_28",
        "--index-url", os.environ.get("VIBE_PIP_INDEX_URL", "https://pypi.org/simple"),
        "requirements.in", "-o", "requirements_lock.txt",
    ]  # fmt: skip
    # Relative paths from the workspace: the lock's "# via -r requirements.in" comments name no machine's path.
    return subprocess.run(cmd, cwd=workspace).returncode


if __name__ == "__main__":
    sys.exit(main())
