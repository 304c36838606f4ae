"""Creates the shared virtualenv for one lock file, once, safely.

Called by the `@pypi` repository rule with the interpreter it found. Several
clones (or Bazel servers) may ask for the same venv at once, so the work runs
under an exclusive file lock; the venv is marked complete only after pip
succeeds, and an incomplete one (a killed install) is deleted and rebuilt.
"""

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import time

COMPLETE_MARKER = ".vibe-complete"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--venv", required=True)
    args = parser.parse_args()

    os.makedirs(os.path.dirname(os.path.abspath(args.venv)), exist_ok=True)
    with open(args.venv + ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(args.venv, COMPLETE_MARKER)):
            return 0
        if os.path.exists(args.venv):
            print(f"vibe: removing incomplete environment {args.venv}", flush=True)
            shutil.rmtree(args.venv)
        print(f"vibe: creating the Python environment in {args.venv} (a few minutes, once per lock)", flush=True)
        start = time.monotonic()
        subprocess.run([args.python, "-m", "venv", args.venv], check=True)
        venv_python = os.path.join(args.venv, "bin", "python")
        # --isolated: ignore the machine's pip config (extra indexes, find-links,
        # constraints); the lock's hashes are the whole truth. --no-deps: the lock
        # is closed, so pip has nothing to resolve.
        pip = [venv_python, "-m", "pip", "--isolated", "--disable-pip-version-check"]
        index = os.environ.get("VIBE_PIP_INDEX_URL")
        install = [*pip, "install", "--require-hashes", "--no-deps", "--progress-bar", "off", "-r", args.lock]
        if index:
            install += ["--index-url", index]
        result = subprocess.run(install)
        if result.returncode != 0:
            print(f"vibe: pip failed (exit {result.returncode}); the environment is left incomplete", file=sys.stderr)
            return result.returncode
        with open(os.path.join(args.venv, COMPLETE_MARKER), "w") as marker:
            marker.write(f"installed in {time.monotonic() - start:.0f} s\n")
        print(f"vibe: Python environment ready ({time.monotonic() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
