"""Every Bazel package that holds Python code. The lint, type and import checks
read these packages' `sources`; tests/deps_test.py fails when a package on disk
is missing here."""

PY_PACKAGES = [
    "//tests",
    "//tools/pytest",
    "//tools/python",
    "//vibe",
    "//vibe/algorithms",
    "//vibe/algorithms/bc",
    "//vibe/algorithms/iql",
    "//vibe/algorithms/dqn",
    "//vibe/algorithms/ppo",
    "//vibe/algorithms/sac",
    "//vibe/bench",
    "//vibe/checkpoint",
    "//vibe/config",
    "//vibe/core",
    "//vibe/data",
    "//vibe/envs",
    "//vibe/logging",
    "//vibe/networks",
    "//vibe/policies",
    "//vibe/scripts",
    "//vibe/serving",
    "//vibe/sharding",
    "//vibe/train",
]

SOURCES = [package + ":sources" for package in PY_PACKAGES]
