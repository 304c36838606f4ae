"""Exact resume and crash safety of the train command, across real process exits and kills.

- For every algorithm, N updates straight vs N/2, process exit, `--resume` in a
  new process, N/2 more: the whole final state (params, optimizer state, env
  states, RNG key, replay buffer, counters) and every logged metric are bitwise
  equal. The replay buffers are small enough to wrap around (DQN's before the
  split, SAC's after it).
- Greedy evaluations every 2 updates continue across the resume: the split run
  logs the same `eval/*` rows at the same steps as the straight one (none lost,
  none twice) and marks the same best step.
- A process SIGKILLed with its checkpoint writer stalled in the middle of a
  write (the step's temporary directory on disk, uncommitted), then its resumed
  process SIGKILLed at a seeded random moment, leave only readable checkpoints
  besides that partial step; each resume continues from the last complete one
  and the last ends with the uninterrupted run's state and metrics.
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
import random
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
    # 16 updates; a big network so that saves take a moment (one is killed mid-write).
    "cartpole_ppo": "--algo.num-envs 2 --algo.num-steps 8 --algo.total-timesteps 256 "
    "--algo.encoder.hidden-sizes 256 256",
    # 8 updates of 8 transitions; the 24-transition buffer wraps at update 3.
    "cartpole_dqn": "--algo.total-timesteps 64 --algo.learning-starts 16 --algo.batch-size 8 --algo.buffer-size 24",
    # 8 updates of 2 transitions; the 10-transition buffer wraps at update 5.
    "pendulum_sac": "--algo.num-envs 2 --algo.total-timesteps 16 --algo.learning-starts 4 --algo.batch-size 4 "
    "--algo.buffer-size 10",
}
RUNS = {name: flags.split() for name, flags in RUNS.items()}
UPDATES = {"cartpole_ppo": 16, "cartpole_dqn": 8, "pendulum_sac": 8}
# Chunks of 2 updates, a greedy evaluation every 2 (a better one is saved too and marked best), a checkpoint
# every 4: the split, the evaluations and the checkpoints fall on chunk ends, so a split run logs the same rows
# as the straight one.
EVAL_EVERY = 2
COMMON = ["--eval-episodes", "2", "--eval-every", str(EVAL_EVERY), "--checkpoint.save-interval", "4"]
COMMON += ["--updates-per-chunk", "2", "--wandb-mode", "disabled"]
# Every save waits for the one before it to commit, and an idle-priority writer (the default) gets no CPU while
# other test targets saturate the cores: under load 15 on 2 cores the first halves alone took over 10 minutes.
COMMON += ["--checkpoint.writer-priority", "low"]
COMMON += ["--compilation-cache", ""]  # every process compiles for itself (see `no_compilation_cache`)
WANDB = "cartpole_ppo"  # its split run logs to wandb (offline), which must keep its run id across the resume
CRASH = "cartpole_ppo"  # the preset of the SIGKILL test
KILL_AT = 8  # the update whose save the first crash kills in the middle of its write
# The second crash: its process is SIGKILLed this long after it committed its first checkpoint, drawn from
# [0, KILL_DELAY_MAX_S) by a seeded generator, so the kill lands wherever the run is (a chunk, an evaluation, a
# save being packed or written), not right after a commit. The rest of the run takes longer (at least two more
# saves, each committed by the writer process), so the kill always lands before the run's end. (This seed draws
# 28 ms.)
KILL_SEED, KILL_DELAY_MAX_S = 20261201, 0.2
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax writes step N into N.orbax-checkpoint-tmp, then renames it to N
COMMIT_FILE = "commit_success.txt"  # what orbax writes into that directory just before the rename
STEP_METADATA = "_CHECKPOINT_METADATA"  # what orbax writes into it first, before any item
NOT_REPRODUCIBLE = {"time", "sps"}  # wall-clock metrics

# Runs the train command once per JSON argv list, in this one process.
TRAIN_EACH = """
import json, sys
from vibe.scripts import train
for argv in json.loads(sys.argv[1]):
    train.main(argv)
"""

# Runs the train command until the save of update KILL_AT starts; then stalls the checkpoint writer in the middle
# of that write, as writer_test.py stalls it (SIGSTOP), and SIGKILLs its own process group: itself and the stopped
# writer. The writer runs in 2 ms slices (SIGCONT, sleep, SIGSTOP) until the step's temporary directory holds part
# of an item besides orbax's step metadata, so it stops after the items' write began and before the rename that
# commits them (orbax spends tens of ms between the two). Run only as a session leader (start_new_session): the
# group is then this process and its children.
KILL_MID_WRITE = """
import glob, os, signal, sys, time
from vibe.checkpoint import manager
from vibe.scripts import train
save, kill_at, tmp_suffix = manager.save, int(os.environ["KILL_AT"]), os.environ["TMP_SUFFIX"]
step_metadata = os.environ["STEP_METADATA"]

def stopped(pid):
    for task in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            state = open(task).read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # a thread that exited
        if state not in "TZX":
            return False
    return True

def stop(pid):
    os.kill(pid, signal.SIGSTOP)
    while not stopped(pid):
        time.sleep(0.0005)

def save_then_stall_and_die(mngr, step, state, assets, **kwargs):
    save(mngr, step, state, assets, **kwargs)
    if step != kill_at:
        return
    assert os.getpgrp() == os.getpid(), "run as a session leader: the kill takes the whole process group"
    writer, directory = mngr._writer.pid, str(mngr.directory)
    partial, final = os.path.join(directory, f"{step}{tmp_suffix}"), os.path.join(directory, str(step))
    stop(writer)
    deadline = time.monotonic() + 300
    while not (os.path.isdir(partial) and set(os.listdir(partial)) - {step_metadata}):
        assert not os.path.exists(final), f"checkpoint {step} committed within one slice"
        assert time.monotonic() < deadline, f"the writer began no write of checkpoint {step} in 300 s"
        os.kill(writer, signal.SIGCONT)
        time.sleep(0.002)
        stop(writer)
    assert not os.path.exists(final), f"checkpoint {step} committed within one slice"
    inside = sorted(os.path.relpath(p, partial) for p in glob.glob(f"{partial}/**", recursive=True))
    print(f"stalled the writer mid-write of checkpoint {step}: {inside}", file=sys.stderr, flush=True)
    os.killpg(os.getpgrp(), signal.SIGKILL)

manager.save = save_then_stall_and_die
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


def algorithm_of(name: str):
    return training.make_algorithm(presets.cli([name, *RUNS[name]]))


def final_state(name: str, run_dir: pathlib.Path, step: int | None = None):
    """(step, state) of checkpoint `step` (default: the latest complete one) in `run_dir`, read-only."""
    abstract_state = jax.eval_shape(algorithm_of(name).init, jax.random.PRNGKey(0))
    return checkpoints.restore(str(run_dir), abstract_state, step)


def optimizer_steps(state) -> int:
    """Gradient steps the state has taken: the step count of its optimizer (Adam's, and its schedule's)."""
    counts = {
        int(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
        if jax.tree_util.keystr(path).endswith(".count")
    }
    assert len(counts) == 1, counts
    return counts.pop()


def train_rows(run_dir: pathlib.Path) -> list[dict]:
    return [r for r in read_metrics(str(run_dir / "metrics.jsonl")) if "update" in r]


def eval_rows(run_dir: pathlib.Path) -> list[dict]:
    return [r for r in read_metrics(str(run_dir / "metrics.jsonl")) if any(k.startswith("eval/") for k in r)]


def best_of(run_dir: pathlib.Path) -> tuple:
    record = checkpoints.best_record(str(run_dir))
    assert record is not None, f"no best step marked in {run_dir}"
    return record["step"], record["metric"], record["value"]


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
    manager = ocp.CheckpointManager(str(run_dir), options=ocp.CheckpointManagerOptions(read_only=True, create=False))
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

    first_log: str  # stderr of the first process, killed with its writer stalled mid-write
    second_log: str  # stderr of its resumed process, killed at a seeded random moment
    after_first: pathlib.Path  # a copy of the run directory right after the first kill
    after_second: pathlib.Path  # and after the second
    resumed_from: int  # the newest step in the run directory when the second process started
    kill_delay: float  # seconds from that process's first new commit to its kill


@dataclasses.dataclass
class Runs:
    out: pathlib.Path  # <out>/<preset>/straight and <out>/<preset>/split
    straight: dict  # preset -> TrainResult of its straight run (in this process)
    first_log: str  # stderr of the process that ran every first half
    second_log: str  # stderr of the process that resumed them all
    half: dict  # preset -> a copy of its split run directory as the first half left it
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


def split_runs(out: pathlib.Path) -> tuple[str, str, dict]:
    """Every preset's split run: the first halves in one process, which exits, then the resumes in another.
    Returns the two processes' stderr and, per preset, a copy of the run directory between the two."""
    split = {
        name: args_of(name, out, "split") + (["--wandb-mode", "offline"] if name == WANDB else []) for name in RUNS
    }
    first = [[*argv, "--stop-after-updates", str(UPDATES[name] // 2)] for name, argv in split.items()]
    second = [[*argv, "--resume"] for argv in split.values()]
    logs, half = [], {}
    for phase, argvs in (("first", first), ("second", second)):
        returncode, log = finish(
            start(["-c", TRAIN_EACH, json.dumps(argvs)], out / f"{phase}.log"), out / f"{phase}.log"
        )
        assert returncode == 0, log
        logs.append(log)
        if phase == "first":  # the resumes replace its checkpoints: keep what the first half left
            for name in RUNS:
                half[name] = shutil.copytree(out / name / "split", out / name / "half")
    assert logs[0].count("continue with --resume") == len(RUNS), logs[0]
    return logs[0], logs[1], half


def crash_runs(out: pathlib.Path) -> Crash:
    """The SIGKILL test's two killed processes: the first stalls its writer in the middle of the save of update
    KILL_AT and kills its process group (`KILL_MID_WRITE`); its resume is killed a seeded random delay after it
    has committed a new checkpoint (its writer then dies with it). Each process has its own session, and the run
    directory is copied once all its processes are gone."""
    args, run_dir = args_of(CRASH, out, "crash"), out / CRASH / "crash"
    env = {"KILL_AT": str(KILL_AT), "TMP_SUFFIX": TMP_SUFFIX, "STEP_METADATA": STEP_METADATA}
    first = start(["-c", KILL_MID_WRITE, *args], out / "first.log", env, start_new_session=True)
    returncode, first_log = finish(first, out / "first.log")
    assert returncode == -signal.SIGKILL, first_log
    wait_until_gone(first.pid)  # the process group id of a session leader is its pid
    shutil.copytree(run_dir, out / "after_first")

    last = max((int(d) for d in os.listdir(run_dir) if d.isdigit()), default=0)
    delay = random.Random(KILL_SEED).uniform(0, KILL_DELAY_MAX_S)
    second = start(["-m", "vibe.scripts.train", *args, "--resume"], out / "second.log", start_new_session=True)
    deadline = time.monotonic() + 600
    while second.poll() is None and time.monotonic() < deadline:
        if any(d.isdigit() and int(d) > last for d in os.listdir(run_dir)):
            time.sleep(delay)
            second.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    returncode, second_log = finish(second, out / "second.log")
    assert returncode == -signal.SIGKILL, f"the resumed run ended before its kill ({returncode}):\n{second_log}"
    wait_until_gone(second.pid)
    shutil.copytree(run_dir, out / "after_second")
    return Crash(first_log, second_log, out / "after_first", out / "after_second", last, delay)


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
        first_log, second_log, half = split.result()
        yield Runs(out, straight, first_log, second_log, half, crash_out, crash)
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
    # Not vacuous: the resumed half learned. Its gradient steps grew the optimizer's count past the first half's
    # (read from the first half's own checkpoint), and every row it logged has nonzero losses (DQN and SAC log
    # 0.0 before learning starts).
    half_step, half_state = final_state(name, runs.half[name])
    assert half_step == n // 2
    assert optimizer_steps(state_b) > optimizer_steps(half_state) > 0
    steps_per_update = algorithm_of(name).steps_per_update
    resumed_rows = [r for r in train_rows(split_dir) if r["step"] > n // 2 * steps_per_update]
    assert [r["update"] for r in resumed_rows] == list(range(n // 2 + 2, n + 1, 2))
    for row in resumed_rows:
        losses = {k: v for k, v in row.items() if k.startswith("loss/")}
        assert losses and all(v != 0 for v in losses.values()), row


@pytest.mark.parametrize("name", sorted(RUNS))
def test_eval_rows_continue_across_the_resume(name, runs):
    """Every EVAL_EVERY updates an `eval/*` row, on both sides of the split, none dropped or logged twice by
    the resume, equal to the straight run's, and the same step marked best."""
    n, steps_per_update = UPDATES[name], algorithm_of(name).steps_per_update
    straight, split = eval_rows(runs.out / name / "straight"), eval_rows(runs.out / name / "split")
    expected_steps = [u * steps_per_update for u in range(EVAL_EVERY, n + 1, EVAL_EVERY)]
    assert [r["step"] for r in straight] == [r["step"] for r in split] == expected_steps
    assert all(r["eval/episodes"] == 2 for r in split)
    assert straight == split  # no wall-clock values in them: bitwise the same returns
    assert any(r["step"] <= n // 2 * steps_per_update for r in eval_rows(runs.half[name]))  # from the first half
    assert best_of(runs.out / name / "split") == best_of(runs.out / name / "straight")


def test_the_wandb_run_id_persists_across_the_resume(runs):
    split_dir = runs.out / WANDB / "split"
    wandb_id = (split_dir / "wandb_id.txt").read_text().strip()
    # Offline runs: one directory per process, all with the same id.
    wandb_runs = sorted(p.name for p in (split_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(r.endswith(wandb_id) for r in wandb_runs), wandb_runs


def test_sigkill_mid_write_and_at_random_resumes_to_the_same_state(runs):
    n, args = UPDATES[CRASH], args_of(CRASH, runs.crash_out, "crash")
    run_dir = runs.crash_out / CRASH / "crash"
    crash = runs.crash.result(timeout=900)
    steps_per_update = algorithm_of(CRASH).steps_per_update

    # The first kill left checkpoint KILL_AT half-written: its temporary directory, with part of its items in it
    # and no commit file; no step directory KILL_AT. Every other checkpoint reads.
    assert f"stalled the writer mid-write of checkpoint {KILL_AT}: " in crash.first_log, crash.first_log
    partial = crash.after_first / f"{KILL_AT}{TMP_SUFFIX}"
    assert partial.is_dir(), sorted(os.listdir(crash.after_first))
    assert set(os.listdir(partial)) - {STEP_METADATA}, sorted(os.listdir(partial))
    assert not (partial / COMMIT_FILE).exists()
    steps = readable_steps(CRASH, crash.after_first)
    assert steps and steps[-1] < KILL_AT, steps
    # The resume started from the last complete checkpoint, past the partial one (cleared away: see the end).
    assert crash.resumed_from == steps[-1]
    assert f"Resuming {run_dir} from update {steps[-1]}/{n}" in crash.second_log, crash.second_log
    # The second kill came after the resumed process committed a checkpoint of its own, before the end.
    later = readable_steps(CRASH, crash.after_second)
    assert steps[-1] < later[-1] < n, (steps, later, crash.kill_delay)

    result = training.train(presets.cli([*args, "--resume"]))
    assert result.start_env_step == later[-1] * steps_per_update
    step_a, state_a = final_state(CRASH, runs.out / CRASH / "straight")
    step_b, state_b = final_state(CRASH, run_dir)
    assert step_a == step_b == n
    assert_states_equal(state_a, state_b)
    assert_same_metrics(run_dir, runs.out / CRASH / "straight")  # rows logged past the restored checkpoint dropped
    assert best_of(run_dir) == best_of(runs.out / CRASH / "straight")
    assert readable_steps(CRASH, run_dir)[-1] == n
    assert not [d for d in os.listdir(run_dir) if TMP_SUFFIX in d]  # no partial step left behind


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
