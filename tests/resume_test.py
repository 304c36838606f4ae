"""Exact resume and crash safety of the train command, across real process exits and kills.

- For every algorithm, N updates straight vs N/2, process exit, `--resume` in a
  new process, N/2 more: the whole final state (params, optimizer state, env
  states, RNG key, replay buffer, counters) and every logged metric are bitwise
  equal. The replay buffers are small enough to wrap around (DQN's before the
  split, SAC's after it).
- A process SIGKILLed while an async save is in flight, then its resumed
  process SIGKILLed at an arbitrary moment, leave only readable checkpoints; the
  next resume continues from the last complete one and ends with the
  uninterrupted run's state and metrics.
- The run directory refusals: an existing one without flags, `--resume` with
  nothing to resume, `--resume --overwrite`; none of them touches a file.

What costs time here is starting Python + JAX and XLA compiling, not the few
tiny updates. So the uninterrupted reference runs (and the last resume after
the kills) run in this process, the first halves of all three algorithms share
one process (which then exits) and their resumes another, and independent work
overlaps (see `runs`). Every resume still starts from what a dead process left
on disk, and there is no compilation cache: every process compiles its own
programs.
"""

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.experimental.compilation_cache import compilation_cache

from vibe.checkpoint import manager as checkpoints
from vibe.config import presets
from vibe.logging.metrics import read_metrics
from vibe.scripts import training

# Flags per run; learning starts before the split.
RUNS = {
    # 16 updates; a big network so that saves take a moment (one is killed in flight).
    "cartpole_ppo": "--algo.num-envs 2 --algo.num-steps 8 --algo.total-timesteps 256 --algo.hidden-sizes 256 256",
    # 8 updates of 8 transitions; the 24-transition buffer wraps at update 3.
    "cartpole_dqn": "--algo.total-timesteps 64 --algo.learning-starts 16 --algo.batch-size 8 --algo.buffer-size 24",
    # 8 updates of 2 transitions; the 10-transition buffer wraps at update 5.
    "pendulum_sac": "--algo.num-envs 2 --algo.total-timesteps 16 --algo.learning-starts 4 --algo.batch-size 4 "
    "--algo.buffer-size 10",
}
RUNS = {name: flags.split() for name, flags in RUNS.items()}
UPDATES = {"cartpole_ppo": 16, "cartpole_dqn": 8, "pendulum_sac": 8}
# Chunks of 2 updates, a checkpoint every 4: the split and the checkpoints fall on chunk ends, so a split
# run logs the same rows as the straight one.
COMMON = ["--eval-episodes", "0", "--checkpoint.save-interval", "4", "--updates-per-chunk", "2"]
COMMON += ["--wandb-mode", "disabled"]
WANDB = "cartpole_ppo"  # its split run logs to wandb (offline), which must keep its run id across the resume
CRASH = "cartpole_ppo"  # the preset of the SIGKILL test
KILL_AT = 8  # the update whose save is in flight when the first crash kills its process
NOT_REPRODUCIBLE = {"time", "sps"}  # wall-clock metrics

# Runs the train command once per JSON argv list, in this one process.
TRAIN_EACH = """
import json, sys
from vibe.scripts import train
for argv in json.loads(sys.argv[1]):
    train.main(argv)
"""

# Runs the train command, SIGKILLing itself right after the save of update KILL_AT starts (still in flight).
KILL_DURING_SAVE = """
import os, signal, sys
from vibe.checkpoint import manager
from vibe.scripts import train
save, kill_at = manager.save, int(os.environ["KILL_AT"])
def save_then_die(mngr, step, state, assets):
    save(mngr, step, state, assets)
    if step == kill_at:
        print(f"killed with save {step} in flight: {mngr.is_saving_in_progress()}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
manager.save = save_then_die
train.main(sys.argv[1:])
"""


def args_of(name: str, out: pathlib.Path, exp_name: str) -> list[str]:
    return [name, *RUNS[name], *COMMON, "--output-dir", str(out), "--exp-name", exp_name]


def start(argv: list[str], log: pathlib.Path, env: dict | None = None, **popen) -> subprocess.Popen:
    """`python *argv` in the background with `env` added, stderr to `log` (a pipe nobody reads could fill
    and block it). Never with a persistent compilation cache: each process compiles for itself."""
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false", **(env or {})}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=f, env=env, **popen)


def finish(proc: subprocess.Popen, log: pathlib.Path) -> tuple[int, str]:
    return proc.wait(timeout=600), log.read_text()


def final_state(name: str, run_dir: pathlib.Path, step: int | None = None):
    """(step, state) of checkpoint `step` (default: the latest complete one) in `run_dir`."""
    algorithm = training.make_algorithm(presets.cli([name, *RUNS[name]]))
    manager = ocp.CheckpointManager(str(run_dir))
    try:
        return checkpoints.restore(manager, jax.eval_shape(algorithm.init, jax.random.PRNGKey(0)), step)
    finally:
        manager.close()


def wait_until_gone(process_group: int, timeout: float = 60) -> None:
    """Waits for every process of `process_group` to exit: a killed trainer's helpers (e.g. a checkpoint
    writer process) must not outlive it, and must not still be writing while the run directory is checked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue  # exited meanwhile
            if int(group) == process_group and state != "Z":
                alive.append(stat.parent.name)
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {alive} of the killed run still live {timeout} s after it died")


def readable_steps(name: str, run_dir: pathlib.Path) -> list[int]:
    """The checkpoints in `run_dir`, after checking that every directory named like one is complete (orbax
    lists it) and restores."""
    manager = ocp.CheckpointManager(str(run_dir))
    steps = sorted(manager.all_steps())
    manager.close()
    assert steps == sorted(int(d) for d in os.listdir(run_dir) if d.isdigit())
    for step in steps:
        assert final_state(name, run_dir, step)[0] == step
    return steps


def assert_states_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    for (path, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def assert_same_metrics(run_dir: pathlib.Path, reference_dir: pathlib.Path):
    """The same rows with bitwise the same values, wall-clock ones aside: no gap, no duplicate, one trajectory."""
    rows = read_metrics(str(run_dir / "metrics.jsonl"))
    reference = read_metrics(str(reference_dir / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [r["step"] for r in reference]
    for row, ref in zip(rows, reference, strict=True):
        assert {k: v for k, v in row.items() if k not in NOT_REPRODUCIBLE} == {
            k: v for k, v in ref.items() if k not in NOT_REPRODUCIBLE
        }


@dataclasses.dataclass
class Crash:
    """What the SIGKILL test's two killed processes left behind."""

    first_log: str  # stderr of the first process, killed with a save in flight
    second_log: str  # stderr of its resumed process, killed at an arbitrary moment
    after_first: pathlib.Path  # a copy of the run directory right after the first kill
    after_second: pathlib.Path  # and after the second


@dataclasses.dataclass
class Runs:
    out: pathlib.Path  # <out>/<preset>/straight and <out>/<preset>/split
    straight: dict  # preset -> TrainResult of its straight run (in this process)
    first_log: str  # stderr of the process that ran every first half
    second_log: str  # stderr of the process that resumed them all
    crash_out: pathlib.Path  # <crash_out>/<CRASH>/crash: the SIGKILL test's run
    crash: concurrent.futures.Future  # of `crash_runs`, still running when the fixture returns


@pytest.fixture(scope="module", autouse=True)
def no_compilation_cache():
    """A cached executable shared by a straight and a resumed run could hide a difference between their
    compilations; this process compiles for itself too (even if JAX_COMPILATION_CACHE_DIR is set)."""
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_enable_compilation_cache", enabled)
    compilation_cache.reset_cache()


def split_runs(out: pathlib.Path) -> tuple[str, str]:
    """Every preset's split run: the first halves in one process, which exits, then the resumes in another.
    Returns the two processes' stderr."""
    split = {
        name: args_of(name, out, "split") + (["--wandb-mode", "offline"] if name == WANDB else []) for name in RUNS
    }
    first = [[*argv, "--stop-after-updates", str(UPDATES[name] // 2)] for name, argv in split.items()]
    second = [[*argv, "--resume"] for argv in split.values()]
    logs = []
    for phase, argvs in (("first", first), ("second", second)):
        returncode, log = finish(
            start(["-c", TRAIN_EACH, json.dumps(argvs)], out / f"{phase}.log"), out / f"{phase}.log"
        )
        assert returncode == 0, log
        logs.append(log)
    assert logs[0].count("continue with --resume") == len(RUNS), logs[0]
    return logs[0], logs[1]


def crash_runs(out: pathlib.Path) -> Crash:
    """The SIGKILL test's two killed processes: the first kills itself with the save of update KILL_AT in
    flight; its resume is killed as soon as it has committed a new checkpoint. Each kill takes the
    trainer only (its own session), and the run directory is copied once all its processes are gone."""
    args, run_dir = args_of(CRASH, out, "crash"), out / CRASH / "crash"
    first = start(["-c", KILL_DURING_SAVE, *args], out / "first.log", {"KILL_AT": str(KILL_AT)}, start_new_session=True)
    returncode, first_log = finish(first, out / "first.log")
    assert returncode == -signal.SIGKILL, first_log
    wait_until_gone(first.pid)  # the process group id of a session leader is its pid
    shutil.copytree(run_dir, out / "after_first")

    last = max((int(d) for d in os.listdir(run_dir) if d.isdigit()), default=0)
    second = start(["-m", "vibe.scripts.train", *args, "--resume"], out / "second.log", start_new_session=True)
    deadline = time.monotonic() + 600
    while second.poll() is None and time.monotonic() < deadline:
        if any(d.isdigit() and int(d) > last for d in os.listdir(run_dir)):
            second.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    returncode, second_log = finish(second, out / "second.log")
    assert returncode == -signal.SIGKILL, second_log
    wait_until_gone(second.pid)
    shutil.copytree(run_dir, out / "after_second")
    return Crash(first_log, second_log, out / "after_first", out / "after_second")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every preset's straight and split runs, and the SIGKILL test's killed processes. Two streams of work
    overlap: this process trains the straight runs, then a thread runs the killed processes (`crash_runs`),
    while another thread runs the split runs' two processes (`split_runs`)."""
    out, crash_out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("crash")
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        split = pool.submit(split_runs, out)
        straight = {name: training.train(presets.cli(args_of(name, out, "straight"))) for name in RUNS}
        crash = pool.submit(crash_runs, crash_out)
        first_log, second_log = split.result()
        yield Runs(out, straight, first_log, second_log, crash_out, crash)
    finally:
        pool.shutdown(wait=True)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_half_exit_resume_half_equals_a_straight_run(name, runs):
    n = UPDATES[name]
    straight_dir, split_dir = runs.out / name / "straight", runs.out / name / "split"
    assert f"Stopped at update {n // 2} of {n}; continue with --resume" in runs.first_log
    assert f"Resuming {split_dir} from update {n // 2}/{n}" in runs.second_log

    step_a, state_a = final_state(name, straight_dir)
    step_b, state_b = final_state(name, split_dir)
    assert step_a == step_b == n
    assert_states_equal(state_a, state_b)
    assert_states_equal(runs.straight[name].state, state_a)  # and the checkpoint is the live state, bitwise
    assert_same_metrics(split_dir, straight_dir)
    # Not vacuous: the resumed half learned (its gradient steps logged losses).
    assert any(k.startswith("loss/") for k in read_metrics(str(split_dir / "metrics.jsonl"))[-1])


def test_the_wandb_run_id_persists_across_the_resume(runs):
    split_dir = runs.out / WANDB / "split"
    wandb_id = (split_dir / "wandb_id.txt").read_text().strip()
    # Offline runs: one directory per process, all with the same id.
    wandb_runs = sorted(p.name for p in (split_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(r.endswith(wandb_id) for r in wandb_runs), wandb_runs


def test_sigkill_during_an_async_save_and_at_random_resumes_to_the_same_state(runs):
    n, args = UPDATES[CRASH], args_of(CRASH, runs.crash_out, "crash")
    run_dir = runs.crash_out / CRASH / "crash"
    crash = runs.crash.result(timeout=900)
    assert f"killed with save {KILL_AT} in flight: True" in crash.first_log
    steps = readable_steps(CRASH, crash.after_first)
    assert steps and steps[-1] in (KILL_AT - 4, KILL_AT), steps  # the save in flight may or may not have committed
    later = readable_steps(CRASH, crash.after_second)
    assert steps[-1] < later[-1] < n, (steps, later)

    result = training.train(presets.cli([*args, "--resume"]))
    assert result.start_env_step == later[-1] * training.make_algorithm(presets.cli(args)).steps_per_update
    step_a, state_a = final_state(CRASH, runs.out / CRASH / "straight")
    step_b, state_b = final_state(CRASH, run_dir)
    assert step_a == step_b == n
    assert_states_equal(state_a, state_b)
    assert_same_metrics(run_dir, runs.out / CRASH / "straight")  # rows logged past the restored checkpoint dropped
    assert readable_steps(CRASH, run_dir)[-1] == n


def tree_of(directory: pathlib.Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*"))


def test_refused_run_directories_touch_nothing(runs, capsys):
    name = "cartpole_dqn"
    run_dir = runs.out / name / "straight"
    before = tree_of(runs.out)

    with pytest.raises(SystemExit) as refused:  # it exists, and neither flag
        training.train(presets.cli(args_of(name, runs.out, "straight")))
    reason = str(refused.value.__cause__)
    assert refused.value.code == 1
    assert str(run_dir) in reason and "--resume" in reason and "--overwrite" in reason

    with pytest.raises(SystemExit) as refused:  # nothing to resume
        training.train(presets.cli([*args_of(name, runs.out, "never-ran"), "--resume"]))
    assert refused.value.code == 1
    assert "nothing to resume" in str(refused.value.__cause__)
    assert not (runs.out / name / "never-ran").exists()

    with pytest.raises(SystemExit) as refused:  # both flags
        training.train(presets.cli([*args_of(name, runs.out, "straight"), "--resume", "--overwrite"]))
    assert refused.value.code == 2
    assert "cannot --resume and --overwrite" in capsys.readouterr().err

    assert tree_of(runs.out) == before
