"""The command a user typed, for usage lines: ``tools/bazelw run //vibe/scripts:train_ppo --``.

``bazel run`` starts a binary from its runfiles tree, so argparse (and tyro) would print the path of a
Python file inside Bazel's cache as the program name. The runfiles path names the target: a binary
``//pkg:name`` runs ``.../name.runfiles/<workspace>/pkg/<file>.py``.
"""

import os
import sys

RUNFILES = ".runfiles" + os.sep


def bazel_prog(argv0: str | None = None) -> str | None:
    """``tools/bazelw run //pkg:name --`` when running from a Bazel runfiles tree, else None (argparse's default)."""
    path = os.path.abspath(argv0 if argv0 is not None else sys.argv[0])
    head, sep, tail = path.rpartition(RUNFILES)
    if not sep:
        return None
    name = os.path.basename(head)
    parts = tail.split(os.sep)  # <workspace>/pkg/.../<file>.py
    if len(parts) < 3:
        return None
    package = "/".join(parts[1:-1])
    return f"tools/bazelw run //{package}:{name} --"
