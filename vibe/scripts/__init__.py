"""Command-line entry points (`bazel run //vibe/scripts:<verb>`)."""
