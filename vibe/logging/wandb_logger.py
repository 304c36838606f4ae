"""Weights & Biases logging that survives a resume.

    wb = WandbLogger.open(run_dir, mode="offline", config=hparams, resuming=resuming)
    wb.log(env_step, row)  # every chunk, with the env step as the x axis
    wb.close()

The run lives under `<run_dir>/wandb`; its id is kept in `<run_dir>/wandb_id.txt`
so a resumed process continues the same wandb run. Offline is the default and
needs no account (`wandb sync <run_dir>/wandb/offline-run-*` uploads it later).

wandb 0.31 does not resume offline runs: each process starts a new
`offline-run-<time>-<id>` directory with the same id and wandb's own step
counter back at 0. The x axis therefore comes from vibe: every call passes the
env step explicitly, and the logger refuses to go backwards within a process.
"""

import logging
import os
import secrets
import string
from collections.abc import Mapping
from typing import Any, Literal

logger = logging.getLogger(__name__)

Mode = Literal["offline", "online", "disabled"]
MODES: tuple[str, ...] = ("offline", "online", "disabled")
ID_FILE = "wandb_id.txt"

# wandb's own id alphabet and length (wandb.sdk.lib.runid), without importing wandb.
_ID_ALPHABET = string.ascii_lowercase + string.digits


def generate_id(length: int = 8) -> str:
    """A short random run id like wandb's (`wandb.util.generate_id` is gone in 0.31)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def run_id(run_dir: str, *, resuming: bool) -> str:
    """The wandb id of the run in `run_dir`: a new one (written to `wandb_id.txt`) for a
    fresh run, the stored one when resuming.

    A resumed run whose first process had wandb off has no id file: it gets a new id
    (with a warning) rather than failing the resume.
    """
    path = os.path.join(run_dir, ID_FILE)
    if resuming:
        try:
            with open(path) as f:
                stored = f.read().strip()
            if stored:
                return stored
            logger.warning("%s is empty; starting a new wandb run for this resumed run", path)
        except FileNotFoundError:
            logger.warning("No %s (wandb was off before?); starting a new wandb run for this resumed run", path)
    new_id = generate_id()
    os.makedirs(run_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(new_id + "\n")
    return new_id


def _plain(value: Any) -> Any:
    """numpy/JAX scalars become Python numbers (wandb serialises those without surprises)."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value


class WandbLogger:
    """One wandb run, logged at explicit, increasing env steps. Disabled: every call is a no-op."""

    def __init__(self, run: Any | None, *, last_step: int = -1):
        self._run = run  # a wandb Run; None when disabled or closed
        self.id: str | None = None if run is None else run.id  # the wandb run id, None when disabled
        self._last_step = last_step  # the last step logged; a step below it is dropped

    @classmethod
    def open(
        cls,
        run_dir: str,
        *,
        mode: Mode = "offline",
        project: str = "vibe",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        resuming: bool = False,
    ) -> "WandbLogger":
        """Starts (or, resuming, continues) the wandb run of `run_dir`.

        `name` defaults to the run directory's last two parts (`cartpole_ppo/default`).
        `mode="disabled"` returns at once without importing wandb (its import takes ~2 s).
        """
        if mode not in MODES:
            raise ValueError(f"WandbLogger mode={mode!r} is not one of {MODES}; use 'offline' without an account")
        if mode == "disabled":
            return cls(None)
        import wandb  # lazy: a ~2 s import, and unused when disabled

        os.makedirs(run_dir, exist_ok=True)
        id_ = run_id(run_dir, resuming=resuming)
        if name is None:
            name = "/".join(os.path.normpath(os.path.abspath(run_dir)).split(os.sep)[-2:])
        run = wandb.init(
            project=project,
            name=name,
            id=id_,
            # "must" fails loudly online if the id is unknown; offline runs never resume (see the module doc).
            resume=("must" if mode == "online" else "allow") if resuming else None,
            dir=run_dir,
            mode=mode,
            config=dict(config) if config is not None else None,
            # silent: no banner or sync hints on the console; console="off": leave stdout/stderr
            # (and the progress bar on it) alone instead of teeing them into the run.
            settings=wandb.Settings(silent=True, console="off"),
        )
        # Online resume continues wandb's step counter; never log below it.
        starting = int(getattr(run, "starting_step", 0) or 0)
        logger.info(
            "wandb %s run %s (%s) under %s", mode, id_, "resumed" if resuming else "new", os.path.join(run_dir, "wandb")
        )
        return cls(run, last_step=starting - 1)

    @property
    def enabled(self) -> bool:
        """Whether calls reach wandb: False when disabled or after close()."""
        return self._run is not None

    def log(self, step: int, metrics: Mapping[str, Any]) -> bool:
        """Logs `metrics` at x = `step` (env steps). Returns whether it was logged.

        A step below the last one logged is dropped with a warning (wandb would drop it
        too, with a less helpful message). The same step again is allowed: wandb merges
        it into that step's row, which is how the final evaluation joins the last chunk.
        """
        if self._run is None:
            return False
        step = int(step)
        if step < self._last_step:
            logger.warning("wandb: dropped metrics at step %d, below the last logged step %d", step, self._last_step)
            return False
        self._run.log({key: _plain(value) for key, value in metrics.items() if value is not None}, step=step)
        self._last_step = step
        return True

    def close(self, exit_code: int = 0) -> None:
        """Finishes the run (flushes it to disk or the server). Idempotent."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)

    def __enter__(self) -> "WandbLogger":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # An exception marks the run as failed in the wandb UI.
        self.close(exit_code=0 if exc_type is None else 1)
