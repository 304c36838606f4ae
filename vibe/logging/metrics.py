"""Metrics as JSON lines: one object per logged step, in the run directory.

    {"step": 16384, "time": 1.92, "sps": 101254.3, "episode/return_mean": 48.1, ...}

Rows are flushed as they are written so a killed run keeps what it logged.
"""

import json
import math
import os
from collections.abc import Mapping
from typing import IO, Any


def _plain(value: Any) -> Any:
    """Numbers (numpy/JAX scalars included) become JSON numbers; NaN/inf become null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Appends rows to `<run_dir>/metrics.jsonl`; `enabled=False` writes nothing (e.g. on a
    multi-host run's secondary processes)."""

    def __init__(self, path: str, *, enabled: bool = True):
        self.path = path
        self._file: IO[str] | None = None
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = open(path, "a")  # noqa: SIM115 - held open for the whole run

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        row = {"step": int(step), **{key: _plain(value) for key, value in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(path: str, last_step: int) -> int:
    """Drops rows a resumed run will log again: every row past `last_step`, and
    evaluation rows at it. Returns how many rows were dropped.

    Rewrites the file atomically (write, then rename), so a crash here loses nothing.
    """
    if not os.path.exists(path):
        return 0
    rows = read_metrics(path)
    kept = [row for row in rows if row["step"] < last_step or (row["step"] == last_step and "update" in row)]
    if len(kept) < len(rows):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in kept)
        os.replace(tmp, path)
    return len(rows) - len(kept)
