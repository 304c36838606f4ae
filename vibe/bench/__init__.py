"""Benchmarks: `bazel run` targets that print a table and write JSON."""
