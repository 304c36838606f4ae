"""Console output: one-letter levels with millisecond timestamps, and a progress bar.

    21:50:44.123 [I] Training PPO on CartPole-v1: 976 updates, 499,712 env steps
    train  42%|████▏     | 209k/500k [00:02<00:03, 96.1k step/s, return=187]

Log records are written through tqdm so that they never tear the bar.
"""

import logging
import sys

import tqdm

_FORMAT = "%(asctime)s.%(msecs)03d [%(levelname).1s] %(message)s"
_DATEFMT = "%H:%M:%S"


class _TqdmHandler(logging.StreamHandler):
    """Writes above any active progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a logging handler must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Routes the root logger to the console format. Idempotent."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if isinstance(handler, _TqdmHandler):
            return
        root.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    root.addHandler(handler)
    # orbax logs every save step at INFO through absl; keep its warnings only.
    logging.getLogger("absl").setLevel(logging.WARNING)


def progress_bar(total: int, initial: int = 0, desc: str = "train") -> tqdm.tqdm:
    """A bar over environment steps: percentage, count, elapsed/remaining and steps/s."""
    return tqdm.tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=" step",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.3,
    )
