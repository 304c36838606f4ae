"""evaluate_remote against real policy servers: CartPole solved through the wire, MinAtar the same as local.

The module trains `cartpole_ppo` (the preset, as `train cartpole_ppo` runs it) once, and a tiny CNN PPO run
on Breakout-MinAtar; each is served by a `vibe.serving.serve` process on a free loopback port and driven
step by step by `vibe.scripts.evaluate_remote`, one observation per request as a robot loop sends them.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vibe.algorithms.ppo.config import PPOConfig
from vibe.config import presets
from vibe.config.train_config import TrainConfig
from vibe.envs.config import WrapperConfig
from vibe.networks.config import EncoderConfig
from vibe.policies.trained import create_trained_policy
from vibe.scripts import evaluate_remote, training
from vibe.serving.server_process import ROOT, ServerProcess
from vibe.train.config import RunnerConfig

SERVER_START_S = 300  # JAX import, checkpoint restore and the warm-up compiles, on a busy 2-core machine


def _serve(run_dir: str, *args: str) -> ServerProcess:
    return ServerProcess("--policy.dir", run_dir, *args, module="vibe.serving.serve", timeout_s=SERVER_START_S)


def _evaluate_remote(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vibe.scripts.evaluate_remote", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> str:
    config = presets.get("cartpole_ppo")
    out = tmp_path_factory.mktemp("cartpole")
    runner = dataclasses.replace(config.runner, output_dir=str(out), wandb_mode="disabled")
    return training.train(dataclasses.replace(config, runner=runner)).run_dir


@pytest.fixture(scope="module")
def cartpole_server(cartpole):
    with _serve(cartpole) as server:  # the best step, as `serve --policy.dir RUN_DIR` picks it
        yield server


@pytest.fixture(scope="module")
def minatar(tmp_path_factory) -> str:
    algo = PPOConfig(
        num_envs=2,
        num_steps=8,
        total_timesteps=16,
        num_minibatches=2,
        update_epochs=1,
        encoder=EncoderConfig(kind="cnn", hidden_sizes=(16,)),
    )
    # Seed 3's greedy policy takes more than one action on these episodes (the test checks it; a tiny run's
    # policy often takes one only): a policy that always takes one action would match any other.
    out = tmp_path_factory.mktemp("minatar")
    runner = RunnerConfig(output_dir=str(out), seed=3, eval_episodes=0, wandb_mode="disabled")
    return training.train(TrainConfig(name="minatar_ppo", env="Breakout-MinAtar", algo=algo, runner=runner)).run_dir


def test_served_cartpole_ppo_solves_cartpole(cartpole_server, tmp_path):
    server, out = cartpole_server, tmp_path / "eval.json"
    assert "warm-up: batch sizes (1, 2, 4, 8)" in server.log()
    result = _evaluate_remote("--port", str(server.port), "--episodes", "5", "--seed", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"CartPole-v1 through ws://127.0.0.1:{server.port} (ppo, step ")
    report = json.loads(out.read_text())
    assert report["env"] == "CartPole-v1" and len(report["returns"]) == 5
    assert report["mean_return"] >= 475.0, line


def test_served_minatar_cnn_returns_what_local_evaluation_returns(minatar):
    episodes, seed = 8, 1
    local = evaluate_remote.run_episodes(
        create_trained_policy(minatar), "Breakout-MinAtar", episodes=episodes, seed=seed, obs_key="observation.image"
    )
    with _serve(minatar) as server:
        remote = evaluate_remote.main(evaluate_remote.Args(port=server.port, episodes=episodes, seed=seed))
    assert remote.returns == local.returns
    assert remote.lengths == local.lengths
    for got, want in zip(remote.actions, local.actions, strict=True):
        assert got.tolist() == want.tolist()
    taken = set(np.concatenate(local.actions).tolist())
    assert len(taken) > 1, f"the policy took only actions {taken}: the comparison says nothing; use another seed"


def test_a_policy_for_another_env_is_one_line(cartpole_server):
    result = _evaluate_remote("--port", str(cartpole_server.port), "--episodes", "1", "--env", "Pendulum-v1")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error")] == [
        "error: env Pendulum-v1 observes float32[3] but the policy takes observation.state as float32[4]; "
        "pass the env it was trained on with --env"
    ]


def test_run_episodes_applies_the_wrappers():
    class Recorder:
        def __init__(self):
            self.shapes = set()

        def infer(self, obs):
            self.shapes.add(obs["observation.image"].shape)
            return {"actions": np.int32(1)}

        def reset(self):
            pass

    policy = Recorder()
    result = evaluate_remote.run_episodes(
        policy,
        "Breakout-MinAtar",
        episodes=2,
        seed=0,
        obs_key="observation.image",
        wrappers=WrapperConfig(frame_stack=2),
    )
    assert policy.shapes == {(10, 10, 8)} and len(result.returns) == 2


def test_serving_a_directory_without_checkpoints_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vibe.serving.serve", "--policy.dir", str(tmp_path), "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error")] == [
        f"error: cannot serve {tmp_path} (step best): no complete checkpoint in {tmp_path}"
    ]


def test_no_server_is_one_line():
    result = _evaluate_remote("--port", "1", "--episodes", "1", "--connect-timeout-s", "0.2")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert line.startswith("error: no policy server at ws://127.0.0.1:1 after 0.2 s")
