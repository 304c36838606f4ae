import logging

import numpy as np

from vibe.logging import console
from vibe.logging.metrics import MetricsWriter, read_metrics


def test_rows_round_trip_with_numpy_scalars_and_nan(tmp_path):
    path = str(tmp_path / "run" / "metrics.jsonl")
    with MetricsWriter(path) as writer:
        writer.write(10, {"loss": np.float32(0.5), "count": np.int32(3)})
        writer.write(20, {"loss": float("nan")})
    assert read_metrics(path) == [{"step": 10, "loss": 0.5, "count": 3}, {"step": 20, "loss": None}]


def test_console_format_has_one_letter_level_and_milliseconds(capsys):
    console.setup_logging()
    console.setup_logging()  # idempotent: one handler, one line per record
    logging.getLogger("vibe.test").warning("hello %d", 7)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    time, level, message = lines[0].split(" ", 2)
    assert len(time) == len("12:34:56.789") and time[8] == "."
    assert (level, message) == ("[W]", "hello 7")
