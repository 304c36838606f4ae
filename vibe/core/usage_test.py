"""Usage lines name the bazel target a user runs, not a file in Bazel's cache."""

from vibe.core import usage


def test_a_runfiles_path_gives_the_bazel_command() -> None:
    path = "/root/.cache/bazel/x/bin/vibe/bench/ppo_cartpole.runfiles/vibe/vibe/bench/online.py"
    assert usage.bazel_prog(path) == "tools/bazelw run //vibe/bench:ppo_cartpole --"
    path = "/c/bin/vibe/scripts/train_ppo.runfiles/vibe/vibe/scripts/train_ppo.py"
    assert usage.bazel_prog(path) == "tools/bazelw run //vibe/scripts:train_ppo --"


def test_outside_bazel_argparse_keeps_its_default() -> None:
    assert usage.bazel_prog("/work/main/vibe/scripts/train_ppo.py") is None
