"""A user's whole day, through the commands users run, each a separate process:

1. ``train cartpole_ppo``, SIGKILLed (with its checkpoint writer) once a checkpoint is on disk, then
   ``--resume``d to the end: the resume starts from the last complete checkpoint, the metrics rows continue
   with no gap and no duplicate, and the final greedy return is >= 475.
2. ``vibe.serving.serve`` serves that run on a free loopback port (``/healthz`` polled) and
   ``evaluate_remote`` drives CartPole through it to a mean return >= 475, from the best checkpoint.
3. ``record_dataset`` records 20 expert episodes, ``compute_norm_stats`` writes their ``norm_stats.json``
   (checked against the states read back with ``LeRobotReader``), and ``train cartpole_bc --data.normalize``
   learns from them (its normaliser is those stats) to a greedy return >= 475.
4. The BC run, served, returns >= 475 through ``evaluate_remote``.
5. Pixels: two updates of CNN PPO on Breakout-MinAtar, served: ``evaluate_remote`` gets the returns and
   episode lengths that a local greedy evaluation of the same checkpoint gets for the same seed, and the
   served policy takes the same actions, step by step (through ``WebsocketClientPolicy``).
6. SIGTERM to that server while a request waits in its batcher: the request is answered and the server exits 0.

Every failure names its step and command, with the tail of that command's log. The train commands share one
compilation cache in the test's temporary directory (under ``bazel test``, ``TEST_TMPDIR``), so the resumed
run and the later runs load what the earlier ones compiled. The commands run as
``sys.executable -m vibe.scripts.X`` from the workspace (or runfiles) root, as
vibe/serving/server_process.py starts servers: the BUILD target lists the binaries as data. About 3 minutes of
CPU (4 minutes of wall time under load 17 on 2 cores).
"""

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

# The test reads datasets back in this process too: lerobot's datasets cache must not be the user's (read-only
# under bazel's sandbox). Set before anything imports `datasets`, which reads it once.
os.environ.setdefault("HF_HOME", os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), "e2e_hf"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import vibe

ROOT = pathlib.Path(vibe.__file__).parent.parent  # the workspace (or runfiles) root
COMMAND_TIMEOUT_S = 600  # one command, JAX import and compiles included, on a busy 2-core machine
SERVER_START_S = 300  # a server's checkpoint restore and warm-up compiles
SOLVED = 475.0  # CartPole-v1 greedy return that counts as solved
LOG_TAIL = 3000  # characters of a failed command's log in the failure message

# Pixel PPO: two updates of the Breakout-MinAtar preset's CNN, shrunk. After them seed 4's greedy policy (at lr
# 2.5e-4 and entropy 0.01; with seeds 0-3 and 5-7 it takes one action everywhere) takes actions 1 and 2 on the
# evaluation's episodes (checked below), so equal actions are not a constant policy's. Separate actor and critic
# torsos, as when the seed was chosen (the preset shares one). Re-chosen when PPO's shuffle changed.
MINATAR = [
    "breakout_minatar_ppo",
    *("--algo.num-envs", "2", "--algo.num-steps", "8", "--algo.total-timesteps", "32"),
    *("--algo.num-minibatches", "2", "--algo.update-epochs", "1", "--algo.lr", "2.5e-4", "--algo.ent-coef", "0.01"),
    *("--algo.encoder.kind", "cnn", "--algo.encoder.hidden-sizes", "16", "--algo.no-shared-encoder"),
    *("--seed", "4", "--eval-episodes", "0"),
]
MINATAR_EPISODES, MINATAR_SEED = 8, 1


@dataclasses.dataclass
class Day:
    """Where the day's files go, and every process it started (killed, with their groups, at the end)."""

    tmp: pathlib.Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = dataclasses.field(default_factory=list)

    def start(self, args: list[str], log: pathlib.Path) -> subprocess.Popen:
        """``python -m ...`` in its own session (so a kill takes its helper processes too), output to ``log``."""
        with open(log, "w") as f:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, step: str, args: list[str], log_name: str) -> str:
        """Runs a command to its end; its log, or a failure naming ``step`` with the log's tail."""
        log = self.tmp / f"{log_name}.log"
        proc = self.start(args, log)
        try:
            rc = proc.wait(COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            pytest.fail(f"step {step} timed out after {COMMAND_TIMEOUT_S} s:\n{tail(log)}")
        if rc != 0:
            pytest.fail(f"step {step} exited {rc}:\n{tail(log)}")
        return log.read_text()

    def train(self, step: str, args: list[str], log_name: str) -> str:
        return self.run(step, ["-m", "vibe.scripts.train", *args, *self.train_flags()], log_name)

    def train_flags(self) -> list[str]:
        cache = str(self.tmp / "jax_cache")
        return ["--output-dir", str(self.tmp / "runs"), "--wandb-mode", "disabled", "--compilation-cache", cache]


def tail(log: pathlib.Path) -> str:
    return log.read_text()[-LOG_TAIL:]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILLs the session ``proc`` leads (the process and any helper it started), then reaps it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def wait_until_gone(group: int, timeout_s: float = 60) -> None:
    """Waits until no live process is left in process group ``group`` (a killed trainer's checkpoint writer
    must not still be writing when the run directory is read or resumed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == group and state != "Z":
                alive.append(stat.parent.name)
        if not alive:
            return
        time.sleep(0.05)
    pytest.fail(f"step 1 (train, SIGKILL): processes {alive} of the killed run live {timeout_s} s after the kill")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port: int) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return None


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: pathlib.Path


def serve(day: Day, step: str, run_dir: str, name: str, *flags: str) -> Server:
    """``vibe.serving.serve --policy.dir RUN`` on a free loopback port, once ``/healthz`` answers 200."""
    port, log = free_port(), day.tmp / f"{name}.log"
    args = ["-m", "vibe.serving.serve", "--policy.dir", run_dir, "--host", "127.0.0.1", "--port", str(port), *flags]
    proc = day.start(args, log)
    deadline, polls = time.monotonic() + SERVER_START_S, 0
    while healthz(port) != 200:
        polls += 1
        if proc.poll() is not None:
            pytest.fail(f"step {step} (serve) exited {proc.returncode} before serving:\n{tail(log)}")
        if time.monotonic() > deadline or polls > SERVER_START_S * 10:
            kill_group(proc)
            pytest.fail(f"step {step} (serve): no /healthz on port {port} after {SERVER_START_S} s:\n{tail(log)}")
        time.sleep(0.1)
    return Server(proc, port, log)


def evaluate_remote(day: Day, step: str, server: Server, name: str, episodes: int, seed: int) -> dict:
    """``evaluate_remote`` through ``server``; its ``--out`` JSON."""
    out = day.tmp / f"{name}.json"
    args = ["-m", "vibe.scripts.evaluate_remote", "--host", "127.0.0.1", "--port", str(server.port)]
    args += ["--episodes", str(episodes), "--seed", str(seed), "--out", str(out)]
    day.run(f"{step} (evaluate_remote)", args, name)
    return json.loads(out.read_text())


def greedy_return(step: str, log: str) -> float:
    """The final greedy evaluation a train command logs."""
    match = re.search(r"Greedy evaluation over \d+ episodes: eval/return_mean=(-?[\d.]+)", log)
    if match is None:
        pytest.fail(f"step {step}: no final greedy evaluation in the log:\n{log[-LOG_TAIL:]}")
    return float(match.group(1))


def checkpoint_steps(run_dir: pathlib.Path) -> list[int]:
    """Committed checkpoints (orbax writes step N as N.orbax-checkpoint-tmp and renames it to N when done)."""
    return sorted(int(d) for d in os.listdir(run_dir) if d.isdigit()) if run_dir.is_dir() else []


def metric_rows(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def day(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HOME": str(tmp_path / "hf"),  # lerobot's cache: never the user's
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # several JAX processes at once on an accelerator
    }
    day = Day(tmp_path, env)
    try:
        yield day
    finally:
        for proc in day.procs:
            kill_group(proc)


def step1_train_kill_resume(day: Day) -> pathlib.Path:
    run_dir = day.tmp / "runs" / "cartpole_ppo" / "default"
    args = ["-m", "vibe.scripts.train", "cartpole_ppo", *day.train_flags()]
    # A low-priority writer (rather than idle) commits checkpoints while other processes load the cores.
    low_priority = ["--checkpoint.writer-priority", "low"]
    args += low_priority
    first_log = day.tmp / "train_ppo.log"
    first = day.start(args, first_log)
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while not checkpoint_steps(run_dir):
        if first.poll() is not None:
            pytest.fail(f"step 1 (train) exited {first.returncode} before its first checkpoint:\n{tail(first_log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"step 1 (train): no checkpoint in {run_dir} after {COMMAND_TIMEOUT_S} s:\n{tail(first_log)}")
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    rc = first.wait(30)
    wait_until_gone(first.pid)
    log = first_log.read_text()
    match = re.search(r"Training ppo on CartPole-v1: (\d+) updates × (\d+) env steps", log)
    if match is None:
        pytest.fail(f"step 1 (train): no 'Training ppo on CartPole-v1: N updates' line:\n{log[-LOG_TAIL:]}")
    total, steps_per_update = int(match.group(1)), int(match.group(2))
    last = max(checkpoint_steps(run_dir))
    if rc != -signal.SIGKILL or last >= total:
        pytest.fail(f"step 1 (train): the run ended (exit {rc}, checkpoint {last}/{total}) before the kill")

    resumed = day.train("1 (train --resume)", ["cartpole_ppo", "--resume", *low_priority], "train_ppo_resume")
    if f"Resuming {run_dir} from update {last}/{total}" not in resumed:
        pytest.fail(
            f"step 1 (train --resume) did not resume from the last checkpoint {last}/{total}:\n{resumed[-LOG_TAIL:]}"
        )
    rows = metric_rows(run_dir)
    updates = [r["update"] for r in rows if "update" in r]
    # The runner logs a row per chunk (at most updates_per_chunk = 64 updates) and an eval row every tenth of the
    # run (eval_every 0) and at the end; the resume drops the killed process's rows past its checkpoint.
    chunks = np.diff([0, *updates])
    if not (updates and updates[-1] == total and all(0 < d <= 64 for d in chunks) and last in updates):
        pytest.fail(f"step 1 (train --resume): train rows with a gap or a duplicate around update {last}: {updates}")
    if any(r["step"] != r["update"] * steps_per_update for r in rows if "update" in r):
        pytest.fail(f"step 1 (train --resume): a train row's step is not update × {steps_per_update}")
    interval = max(1, total // 10)
    evals = [r["step"] // steps_per_update for r in rows if "eval/return_mean" in r]
    expected = list(range(interval, total + 1, interval)) + ([total] if total % interval else [])
    if evals != expected:
        pytest.fail(f"step 1 (train --resume): eval rows at updates {evals}, expected {expected} (once each)")
    ret = greedy_return("1 (train --resume)", resumed)
    if ret < SOLVED:
        pytest.fail(f"step 1 (train --resume): final greedy return {ret} < {SOLVED}")
    return run_dir


def step2_serve_and_evaluate(day: Day, run_dir: pathlib.Path) -> None:
    best = json.loads((run_dir / "best.json").read_text())["step"]
    server = serve(day, "2", str(run_dir), "serve_ppo")
    try:
        report = evaluate_remote(day, "2", server, "eval_ppo", episodes=5, seed=0)
    finally:
        kill_group(server.proc)
    if report["env"] != "CartPole-v1" or report["policy"].get("algorithm") != "ppo" or len(report["returns"]) != 5:
        pytest.fail(f"step 2 (evaluate_remote): not 5 episodes of the PPO policy on CartPole-v1: {report}")
    if report["policy"].get("step") != best:
        pytest.fail(f"step 2 (serve): served step {report['policy'].get('step')}, not the best checkpoint {best}")
    if report["mean_return"] < SOLVED:
        pytest.fail(f"step 2 (evaluate_remote): mean return {report['mean_return']} < {SOLVED}: {report['returns']}")


def step3_dataset_stats_bc(day: Day, run_dir: pathlib.Path) -> pathlib.Path:
    dataset = day.tmp / "datasets" / "cartpole_expert"
    args = ["-m", "vibe.scripts.record_dataset", "--run-dir", str(run_dir), "--episodes", "20"]
    out = day.run("3 (record_dataset)", [*args, "--out", str(dataset), "--no-progress"], "record_dataset")
    match = re.search(r"wrote 20 episodes \(([\d,]+) frames, mean return (-?[\d.]+)\)", out)
    if match is None or float(match.group(2)) < SOLVED:
        pytest.fail(f"step 3 (record_dataset): not 20 expert episodes (return >= {SOLVED}):\n{out[-LOG_TAIL:]}")
    frames = int(match.group(1).replace(",", ""))

    args = ["-m", "vibe.scripts.compute_norm_stats", "--dataset", str(dataset), "--no-progress"]
    day.run("3 (compute_norm_stats)", args, "compute_norm_stats")
    stats = json.loads((dataset / "norm_stats.json").read_text())["norm_stats"]
    from vibe.data.lerobot_reader import LeRobotReader

    reader = LeRobotReader(dataset, keys=["observation.state", "action"])
    recorded = reader.get_batch(np.arange(len(reader)))
    states = recorded["observation.state"].astype(np.float64)
    actions = recorded["action"].astype(np.float64).reshape(len(reader), -1)
    if states.shape != (frames, 4):
        pytest.fail(f"step 3 (record_dataset): read back states of shape {states.shape}, expected ({frames}, 4)")
    for key, values in (("observation.state", states), ("action", actions)):
        got = {k: np.asarray(stats[key][k]) for k in ("mean", "std")}
        want = {"mean": values.mean(0), "std": values.std(0)}
        for k in ("mean", "std"):
            if got[k].shape != want[k].shape or not np.allclose(got[k], want[k], rtol=1e-4, atol=1e-6):
                pytest.fail(
                    f"step 3 (compute_norm_stats): norm_stats.json {key} {k} {got[k].tolist()} != the recorded "
                    f"frames' {want[k].tolist()}"
                )
    if not np.all(np.asarray(stats["observation.state"]["std"]) > 0):
        pytest.fail(f"step 3 (compute_norm_stats): a state dimension has std 0: {stats['observation.state']}")

    bc = day.train("3 (train cartpole_bc)", ["cartpole_bc", "--data.dataset", str(dataset), "--data.normalize"], "bc")
    bc_dir = day.tmp / "runs" / "cartpole_bc" / "default"
    from vibe.policies.trained import create_trained_policy

    normalizer = create_trained_policy(str(bc_dir)).params.normalizer
    state_stats = stats["observation.state"]
    for name, field, value in (("mean", "obs_mean", state_stats["mean"]), ("std", "obs_scale", state_stats["std"])):
        used = np.asarray(getattr(normalizer, field))
        if not np.allclose(used, value, rtol=1e-5, atol=1e-6):
            pytest.fail(
                f"step 3 (train cartpole_bc --data.normalize): the checkpoint normalises states with {name} "
                f"{used.tolist()}, not norm_stats.json's {value}"
            )
    ret = greedy_return("3 (train cartpole_bc)", bc)
    if ret < SOLVED:
        pytest.fail(f"step 3 (train cartpole_bc): final greedy return {ret} < {SOLVED}")
    return bc_dir


def step4_serve_bc(day: Day, bc_dir: pathlib.Path) -> None:
    server = serve(day, "4", str(bc_dir), "serve_bc")
    try:
        report = evaluate_remote(day, "4", server, "eval_bc", episodes=5, seed=0)
    finally:
        kill_group(server.proc)
    if report["env"] != "CartPole-v1" or report["policy"].get("algorithm") != "bc":
        pytest.fail(f"step 4 (evaluate_remote): not the BC policy on CartPole-v1: {report}")
    if report["mean_return"] < SOLVED:
        pytest.fail(f"step 4 (evaluate_remote): mean return {report['mean_return']} < {SOLVED}: {report['returns']}")


def step5_pixels(day: Day, minatar: subprocess.Popen, log: pathlib.Path) -> Server:
    try:
        rc = minatar.wait(COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_group(minatar)
        pytest.fail(f"step 5 (train breakout_minatar_ppo) timed out after {COMMAND_TIMEOUT_S} s:\n{tail(log)}")
    if rc != 0:
        pytest.fail(f"step 5 (train breakout_minatar_ppo) exited {rc}:\n{tail(log)}")
    run_dir = day.tmp / "runs" / "breakout_minatar_ppo" / "default"

    # The server holds a lone request up to 3 s when another client was active within the last second
    # (step 6's in-flight request); evaluate_remote is one client, so it never waits.
    server = serve(day, "5", str(run_dir), "serve_minatar", "--max-wait-ms", "3000")
    try:
        report = evaluate_remote(day, "5", server, "eval_minatar", episodes=MINATAR_EPISODES, seed=MINATAR_SEED)
    except BaseException:
        kill_group(server.proc)
        raise
    from vibe.policies.trained import create_trained_policy
    from vibe.scripts import evaluate_remote as evaluation
    from vibe.serving.client import WebsocketClientPolicy

    policy = create_trained_policy(str(run_dir))
    key = evaluation.observation_key(policy.metadata)
    episodes = dict(episodes=MINATAR_EPISODES, seed=MINATAR_SEED, obs_key=key)
    local = evaluation.run_episodes(policy, "Breakout-MinAtar", **episodes)
    if report["env"] != "Breakout-MinAtar" or report["policy"].get("algorithm") != "ppo":
        pytest.fail(f"step 5 (evaluate_remote): not the PPO policy on Breakout-MinAtar: {report}")
    if (report["returns"], report["lengths"]) != (local.returns, local.lengths):
        pytest.fail(
            f"step 5 (serve, CNN): remote returns {report['returns']} lengths {report['lengths']} differ from the "
            f"local greedy evaluation's {local.returns} {local.lengths} (seed {MINATAR_SEED})"
        )
    # The actions too: evaluate_remote's report has none, so the same loop drives the served policy from here
    # through the client a robot uses.
    with WebsocketClientPolicy("127.0.0.1", server.port, connect_timeout_s=30) as client:
        remote = evaluation.run_episodes(client, "Breakout-MinAtar", **episodes)
    for i, (got, want) in enumerate(zip(remote.actions, local.actions, strict=True)):
        if got.tolist() != want.tolist():
            pytest.fail(f"step 5 (serve, CNN): episode {i}: served actions {got.tolist()} != local {want.tolist()}")
    taken = set(np.concatenate(local.actions).tolist())
    if len(taken) < 2:
        pytest.fail(f"step 5: the CNN policy took only actions {taken}; the parity says nothing: change the seed")
    return server


def step6_sigterm_drains(server: Server) -> None:
    """A request held in the server's batcher (see step 5) when SIGTERM arrives is answered; the exit is 0."""
    from vibe.serving.client import WebsocketClientPolicy

    try:
        other = WebsocketClientPolicy("127.0.0.1", server.port, connect_timeout_s=30)
        client = WebsocketClientPolicy("127.0.0.1", server.port, connect_timeout_s=5, recv_timeout_s=60)
        spec = client.get_server_metadata()["observation"]
        obs = {key: np.zeros(s["shape"], s["dtype"]) for key, s in spec.items()}
        replies: list = []

        def request() -> None:
            try:
                replies.append(client.infer(obs))
            except Exception as e:  # reported by the main thread
                replies.append(e)

        other.infer(obs)  # answered at once (one active client); now the server counts two clients
        thread = threading.Thread(target=request, daemon=True)
        thread.start()
        time.sleep(0.5)
        if replies:
            pytest.fail(f"step 6: the request was answered before SIGTERM ({replies[0]!r}); nothing was in flight")
        server.proc.send_signal(signal.SIGTERM)
        thread.join(60)
        try:
            rc = server.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"step 6 (SIGTERM): the server did not exit within 60 s:\n{tail(server.log)}")
        other.close()
        client.close()
    finally:
        kill_group(server.proc)
    log = server.log.read_text()
    if not replies or isinstance(replies[0], BaseException) or "actions" not in replies[0]:
        pytest.fail(f"step 6 (SIGTERM): the in-flight request got {replies} instead of actions:\n{log[-LOG_TAIL:]}")
    if "draining: no new connections; 1 requests in flight" not in log:
        pytest.fail(f"step 6 (SIGTERM): the server did not drain one request in flight:\n{log[-LOG_TAIL:]}")
    if rc != 0:
        pytest.fail(f"step 6 (SIGTERM): the server exited {rc}, not 0:\n{log[-LOG_TAIL:]}")


def test_a_users_day(day):
    # The pixel run is independent of steps 1-4: it trains meanwhile, on the other core.
    minatar_log = day.tmp / "train_minatar.log"
    minatar = day.start(["-m", "vibe.scripts.train", *MINATAR, *day.train_flags()], minatar_log)
    run_dir = step1_train_kill_resume(day)
    step2_serve_and_evaluate(day, run_dir)
    bc_dir = step3_dataset_stats_bc(day, run_dir)
    step4_serve_bc(day, bc_dir)
    server = step5_pixels(day, minatar, minatar_log)
    step6_sigterm_drains(server)
