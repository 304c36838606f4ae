"""RunnerConfig: how a run is driven (directories, chunking, evaluation, seed).

Plain Python with no JAX import: the config layer composes it into TrainConfig.
"""

import dataclasses
from typing import Literal

from vibe.checkpoint.config import CheckpointConfig


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """Options of the host loop, shared by every algorithm."""

    exp_name: str = "default"  # Experiment name; the run directory is <output-dir>/<config name>/<exp-name>.
    output_dir: str = "checkpoints"  # Root of run directories, relative to where the command is run.
    resume: bool = False  # Continue the run in the existing run directory from its latest checkpoint.
    overwrite: bool = False  # Delete an existing run directory of the same name and start over.
    seed: int = 0  # Seed of the run's PRNG key (parameters, environments, sampling).
    num_seeds: int = 1  # Independent runs trained together in one jit (vmap), with seeds seed, seed+1, ...
    updates_per_chunk: int = 64  # Updates run inside one jitted call between two log lines.
    eval_episodes: int = 32  # Greedy evaluation episodes, during training and at the end (0 disables evaluation).
    # Updates between greedy evaluations during training (0: about ten per run); the best one's checkpoint is kept.
    eval_every: int = 0
    # wandb: offline (no account needed; `wandb sync` later), online, or disabled.
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "vibe"  # wandb project of the run.
    stop_after_updates: int = 0  # End this process after this many updates (0: run to the end); continue with --resume.
    # Devices that split each large parameter and its optimizer state (FSDP); 1: plain data parallelism.
    # Must divide the device count. The envs are split over all devices either way.
    fsdp_devices: int = 1
    devices: int = 0  # Train on the first N devices of jax.devices() (0: all of them, on every process).
    # Multi-host: host:port of process 0 (or env VIBE_COORDINATOR_ADDRESS); empty: this process alone.
    coordinator_address: str = ""
    num_processes: int | None = None  # Processes in a multi-host run (or env VIBE_NUM_PROCESSES).
    process_id: int | None = None  # This process's index in [0, num_processes) (or env VIBE_PROCESS_ID).
    # JAX's persistent compilation cache: a repeat run loads its compiled programs instead of compiling them.
    # Empty: off. Under `bazel test` the default is the test's own temporary directory.
    compilation_cache: str = "~/.cache/vibe/jax"
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)  # When checkpoints are saved.

    def __post_init__(self) -> None:
        if not self.exp_name or "/" in self.exp_name:
            raise ValueError(f"RunnerConfig.exp_name={self.exp_name!r} must be a non-empty name without '/'")
        if not self.output_dir:
            raise ValueError("RunnerConfig.output_dir must not be empty; pass --output-dir checkpoints")
        if self.updates_per_chunk < 1:
            raise ValueError(f"RunnerConfig.updates_per_chunk={self.updates_per_chunk} must be >= 1")
        if self.eval_episodes < 0:
            raise ValueError(f"RunnerConfig.eval_episodes={self.eval_episodes} must be >= 0 (0 disables evaluation)")
        if self.eval_every < 0:
            raise ValueError(f"RunnerConfig.eval_every={self.eval_every} must be >= 0 (0: about ten per run)")
        if self.resume and self.overwrite:
            raise ValueError("RunnerConfig: cannot --resume and --overwrite at the same time; pass one of them")
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"RunnerConfig.wandb_mode={self.wandb_mode!r} must be offline, online or disabled")
        if self.stop_after_updates < 0:
            raise ValueError(f"RunnerConfig.stop_after_updates={self.stop_after_updates} must be >= 0")
        if self.num_seeds < 1:
            raise ValueError(f"RunnerConfig.num_seeds={self.num_seeds} must be >= 1")
        if self.fsdp_devices < 1:
            raise ValueError(f"RunnerConfig.fsdp_devices={self.fsdp_devices} must be >= 1 (1: plain data parallelism)")
        if self.devices < 0:
            raise ValueError(f"RunnerConfig.devices={self.devices} must be >= 0 (0: all devices)")
        if self.devices and self.devices % self.fsdp_devices:
            raise ValueError(
                f"RunnerConfig.devices={self.devices} must be divisible by fsdp_devices={self.fsdp_devices}; "
                "pick fsdp_devices among its divisors"
            )
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"RunnerConfig.seed={self.seed} must be in [0, 2**32)")

    def eval_interval(self, num_updates: int) -> int:
        """Updates between two evaluations during training: ``eval_every``, or about a tenth of the run."""
        return self.eval_every or max(1, num_updates // 10)
