"""CheckpointConfig: when checkpoints are written and which are kept.

Plain Python with no JAX import: the config layer composes it.
"""

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Checkpointing of a run; steps are counted in updates (train_step calls)."""

    # Updates between checkpoints (0: about ten per run). The last update always saves.
    save_interval: int = 0
    max_to_keep: int = 1  # Most recent checkpoints kept on disk.
    keep_period: int = 0  # Also keep forever every checkpoint whose update count is a multiple of this (0: none).
    async_timeout_secs: int = 600  # Longest wait for a background save to finish before the run fails.
    # CPU priority of the writer process: "idle" takes no CPU from training; "low" (nice 19) saves faster on busy hosts.
    writer_priority: Literal["idle", "low"] = "idle"

    def __post_init__(self) -> None:
        for name in ("save_interval", "keep_period"):
            if getattr(self, name) < 0:
                raise ValueError(f"CheckpointConfig.{name}={getattr(self, name)} must be >= 0 (0 disables it)")
        if self.max_to_keep < 1:
            raise ValueError(f"CheckpointConfig.max_to_keep={self.max_to_keep} must be >= 1")
        if self.async_timeout_secs < 1:
            raise ValueError(f"CheckpointConfig.async_timeout_secs={self.async_timeout_secs} must be >= 1")
        if self.writer_priority not in ("idle", "low"):
            raise ValueError(f"CheckpointConfig.writer_priority={self.writer_priority!r} must be 'idle' or 'low'")

    def interval(self, num_updates: int) -> int:
        """Updates between saves for a run of `num_updates`."""
        return self.save_interval or max(1, num_updates // 10)
