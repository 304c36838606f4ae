"""Shared output of the benchmarks: a printed table and a JSON file."""

import json
import os
import platform
import statistics
from collections.abc import Sequence
from typing import Any

import jax


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50 % (Agarwal et al. 2021)."""
    ordered = sorted(values)
    n = len(ordered)
    lo, hi = n // 4, n - n // 4
    return statistics.fmean(ordered[lo:hi] if hi > lo else ordered)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
    }


def print_table(rows: Sequence[tuple[str, str]], title: str) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 24))


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), **payload}, f, indent=2)
    print(f"wrote {path}")
