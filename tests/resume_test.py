"""Exact resume and crash safety, through the real command in separate processes.

- N updates straight vs N/2, process exit, `--resume`, N/2 more: the whole
  final state (params, optimizer state, env states, RNG key, replay buffer,
  counters) is bitwise equal, for every algorithm.
- A process SIGKILLed while an async save is in flight, and one killed at an
  arbitrary moment, resume from the last complete checkpoint and end with the
  uninterrupted run's parameters; every checkpoint left on disk restores.
"""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vibe.checkpoint import manager as checkpoints
from vibe.config import presets
from vibe.logging.metrics import read_metrics
from vibe.scripts import training

# 8 updates each, saved every 2.
RUNS = {
    "cartpole_ppo": ["--algo.num-envs", "2", "--algo.num-steps", "8", "--algo.total-timesteps", "128"],
    "cartpole_dqn": ["--algo.total-timesteps", "64", "--algo.learning-starts", "16", "--algo.batch-size", "8"],
    "pendulum_sac": ["--algo.total-timesteps", "32", "--algo.learning-starts", "8", "--algo.batch-size", "8"],
}
COMMON = [
    "--eval-episodes",
    "0",
    "--checkpoint.save-interval",
    "2",
    "--updates-per-chunk",
    "2",
    "--wandb-mode",
    "disabled",
]

# Runs the train command, SIGKILLing itself right after the save of update KILL_AT starts (still in flight).
KILL_DURING_SAVE = """
import os, signal, sys
from vibe.checkpoint import manager
from vibe.scripts import train
save, kill_at = manager.save, int(os.environ["KILL_AT"])
def save_then_die(mngr, step, state, assets):
    save(mngr, step, state, assets)
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
manager.save = save_then_die
train.main(sys.argv[1:])
"""


def train(*args: str, script: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "vibe.scripts.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def final_state(name: str, run_dir: str, args: list[str], step: int | None = None):
    """(step, state) of checkpoint `step` (default: the latest) of a run of preset `name` with `args`."""
    algorithm = training.make_algorithm(presets.cli([name, *args]))
    manager = ocp.CheckpointManager(run_dir)
    step, state = checkpoints.restore(manager, jax.eval_shape(algorithm.init, jax.random.PRNGKey(0)), step)
    manager.close()
    return step, state


def assert_states_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_half_exit_resume_half_equals_a_straight_run(name, tmp_path):
    args = [*RUNS[name], *COMMON, "--output-dir", str(tmp_path)]
    straight = train(name, *args, "--exp-name", "straight")
    assert straight.returncode == 0, straight.stderr
    first = train(name, *args, "--exp-name", "split", "--stop-after-updates", "4", "--wandb-mode", "offline")
    assert first.returncode == 0, first.stderr
    assert "continue with --resume" in first.stderr
    wandb_id = (tmp_path / name / "split" / "wandb_id.txt").read_text().strip()
    second = train(name, *args, "--exp-name", "split", "--resume", "--wandb-mode", "offline")
    assert second.returncode == 0, second.stderr
    assert "Resuming" in second.stderr and "from update 4/8" in second.stderr
    # The wandb run id persists across the resume (offline runs: one directory per process, same id).
    assert (tmp_path / name / "split" / "wandb_id.txt").read_text().strip() == wandb_id
    wandb_runs = sorted(p.name for p in (tmp_path / name / "split" / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(r.endswith(wandb_id) for r in wandb_runs), wandb_runs

    step_a, state_a = final_state(name, str(tmp_path / name / "straight"), RUNS[name])
    step_b, state_b = final_state(name, str(tmp_path / name / "split"), RUNS[name])
    assert step_a == step_b == 8
    assert_states_equal(state_a, state_b)
    # Metric steps continue across the resume with no gap and no duplicates.
    steps = [row["step"] for row in read_metrics(str(tmp_path / name / "split" / "metrics.jsonl"))]
    assert steps == [row["step"] for row in read_metrics(str(tmp_path / name / "straight" / "metrics.jsonl"))]
    assert steps == sorted(set(steps))


def complete_steps(run_dir: str) -> list[int]:
    manager = ocp.CheckpointManager(run_dir)
    steps = sorted(manager.all_steps())
    manager.close()
    return steps


def test_sigkill_during_an_async_save_and_at_random_resumes_to_the_same_params(tmp_path):
    name = "cartpole_ppo"
    # Bigger network so saves take a moment; 16 updates, saved every 2.
    run = ["--algo.num-envs", "2", "--algo.num-steps", "8", "--algo.total-timesteps", "256"]
    run += ["--algo.hidden-sizes", "256", "256", *COMMON, "--output-dir", str(tmp_path)]
    straight = train(name, *run, "--exp-name", "straight")
    assert straight.returncode == 0, straight.stderr

    crashed = train(name, *run, "--exp-name", "crash", script=KILL_DURING_SAVE, env={"KILL_AT": "6"})
    assert crashed.returncode == -signal.SIGKILL
    run_dir = str(tmp_path / name / "crash")
    shrunk = run[: run.index("--eval-episodes")]
    steps = complete_steps(run_dir)
    assert steps and steps[-1] <= 6, steps  # the save in flight may or may not have committed
    for step in steps:  # nothing left unreadable
        assert final_state(name, run_dir, shrunk, step)[0] == step

    # A second kill at an arbitrary moment of the resumed process, after its compile.
    proc = subprocess.Popen(
        [sys.executable, "-m", "vibe.scripts.train", name, *run, "--exp-name", "crash", "--resume"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if max(complete_steps(run_dir)) > steps[-1]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)

    resumed = train(name, *run, "--exp-name", "crash", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    step_a, state_a = final_state(name, str(tmp_path / name / "straight"), shrunk)
    step_b, state_b = final_state(name, run_dir, shrunk)
    assert step_a == step_b == 16
    assert_states_equal(state_a.params, state_b.params)
    assert_states_equal(state_a, state_b)
