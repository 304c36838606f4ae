"""The best checkpoint of a run: `<run_dir>/best.json`, and the keep-policy rule that never drops it.

The runner evaluates the greedy policy during training and names the saved step that evaluated best
(`CheckpointManager.mark_best`). That choice is one small JSON file, written atomically (a temporary file, fsync,
rename), so a kill never leaves it half-written and a resumed run reads it back:

    {"step": 1200, "metric": "eval/return", "value": 487.5, "time": 1764576000.0}

Why a file and not orbax's `BestN`: `BestN` ranks the metrics passed to `save`, but the evaluation comes after the
save, and the writer process, not this one, runs the keep policy. `KeepBest` reads the file at every keep decision,
so the writer process, the in-process orbax save of multi-process runs and a resumed run all see the same best
step with no message between them.
"""

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

BEST_FILE = "best.json"

logger = logging.getLogger(__name__)


def path(directory: str) -> str:
    return os.path.join(str(directory), BEST_FILE)


def read(directory: str) -> dict[str, Any] | None:
    """The record in `<directory>/best.json`, or None when no step was marked best.

    Raises a one-line ValueError naming the file when it is not a record this module wrote.
    """
    file = path(directory)
    try:
        with open(file) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{file} is unreadable ({e}); delete it to forget the best checkpoint") from None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise ValueError(f"{file} holds no integer 'step'; delete it to forget the best checkpoint")
    return record


def write(directory: str, step: int, metric: str, value: float) -> dict[str, Any]:
    """Records `step` as the best checkpoint of `directory` (atomically: a kill leaves the old record or the new)."""
    if not math.isfinite(value):
        raise ValueError(f"cannot mark checkpoint {step} best: {metric}={value} is not a finite number")
    record = {"step": int(step), "metric": str(metric), "value": float(value), "time": time.time()}
    file = path(directory)
    temporary = f"{file}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, file)
    return record


@dataclasses.dataclass
class KeepBest:
    """An orbax preservation policy that keeps the step named in `<directory>/best.json`.

    It reads the file at each decision (one small read per save), because another process writes it. When the file
    is unreadable it keeps every step: a keep policy that deletes nothing is recoverable, a deleted best is not.
    """

    directory: str

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
        try:
            record = read(self.directory)
        except ValueError as e:
            logger.warning("%s; keeping every checkpoint until it is fixed", e)
            return [True] * len(checkpoints)
        best = None if record is None else record["step"]
        return [info.step == best for info in checkpoints]
