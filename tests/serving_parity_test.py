"""Serving parity: a checkpoint's actions are the same bits in memory, in a fresh process and over the wire.

For each tiny training run below (PPO, DQN, SAC on states, PPO and DQN with a CNN on Breakout-MinAtar's
bool images, BC and IQL from a synthetic dataset), the same observations go through three sources that must
agree bitwise:
  * the training state's greedy policy in memory (``algorithm.act`` jitted, batch 1 per observation);
  * ``create_trained_policy`` in a fresh process (a subprocess loads the run and saves its actions);
  * the served checkpoint: a real ``vibe.serving.serve`` process on a free loopback port, one observation
    per request as a robot sends them, the server pinned to ``--max-batch 1``.
Batch 1 everywhere because XLA rounds a matmul of another batch size differently: like is compared with
like. Measured on CPU: continuous actions of one observation at batch 1 and at batch 2-8 differ by about an
ulp (SAC 6.7e-8, a Gaussian PPO on Pendulum 1e-9), and the Gaussian PPO's rows of a batch of 5-7 padded to 8
differ from the unpadded batch too; discrete actions (an argmax) agree. So what the server's padding does to
a row (padded batches against the unpadded batch) is checked in process: exactly for discrete actions,
within float tolerance for continuous ones.
"""

import dataclasses
import os
import subprocess
import sys
from typing import Any

import jax
import numpy as np
import pytest

from vibe.algorithms.bc.config import BCConfig, DataConfig
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.config.train_config import TrainConfig
from vibe.data import testing
from vibe.networks.config import EncoderConfig
from vibe.policies.trained import create_trained_policy
from vibe.scripts import training
from vibe.serving.batching import Batcher
from vibe.serving.client import WebsocketClientPolicy
from vibe.serving.server_process import ROOT, ServerProcess
from vibe.train.config import RunnerConfig

NUM_OBS = 16
SMALL = EncoderConfig(hidden_sizes=(16, 16))
CNN = EncoderConfig(kind="cnn", hidden_sizes=(16,))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    env: str
    algo: Any  # the algorithm's config: a few updates, parity not returns


# One tiny run per algorithm that vibe.policies.trained.ALGORITHMS registers, and per observation kind: a
# new algorithm joins with one Case (an offline one gets the synthetic dataset below as its --data.dataset).
OFFLINE_DATA = DataConfig(batch_size=8)  # the dataset path is filled in by the fixture
CASES = [
    # Normalised observations: every source must apply the run's statistics.
    Case(
        "ppo", "CartPole-v1", PPOConfig(num_envs=2, num_steps=8, total_timesteps=32, normalize_obs=True, encoder=SMALL)
    ),
    Case(
        "dqn", "CartPole-v1", DQNConfig(num_envs=2, total_timesteps=32, learning_starts=16, batch_size=8, encoder=SMALL)
    ),
    Case(
        "sac", "Pendulum-v1", SACConfig(num_envs=2, total_timesteps=16, learning_starts=8, batch_size=8, encoder=SMALL)
    ),
    # MinAtar's bool 10x10x4 planes through the CNN: bool arrays on the wire and in the server's validation.
    Case(
        "ppo_cnn",
        "Breakout-MinAtar",
        PPOConfig(num_envs=2, num_steps=8, total_timesteps=16, num_minibatches=2, update_epochs=1, encoder=CNN),
    ),
    Case(
        "dqn_cnn",
        "Breakout-MinAtar",
        DQNConfig(num_envs=2, total_timesteps=32, learning_starts=16, batch_size=8, encoder=CNN),
    ),
    # Offline, from a synthetic Pendulum-shaped LeRobot dataset; rebuilt from the checkpoint without it.
    Case("bc", "Pendulum-v1", BCConfig(data=OFFLINE_DATA, num_updates=2, encoder=SMALL)),
    Case("iql", "Pendulum-v1", IQLConfig(data=OFFLINE_DATA, num_updates=2, encoder=SMALL)),
]

# create_trained_policy in a process that has seen nothing of the run but its directory.
_FRESH_PROCESS = """
import sys
import numpy as np
from vibe.policies.trained import create_trained_policy

run_dir, obs_path, out_path = sys.argv[1:]
policy = create_trained_policy(run_dir, step="latest")
(key,) = policy.metadata["observation"]
np.save(out_path, np.stack([np.asarray(policy.infer({key: o})["actions"]) for o in np.load(obs_path)]))
"""


@dataclasses.dataclass(frozen=True)
class Run:
    case: Case
    run_dir: str
    algorithm: Any
    state: Any
    obs_key: str
    obs: np.ndarray  # [NUM_OBS, *observation shape] in the env's dtype


@pytest.fixture(scope="module", autouse=True)
def hermetic_hf(tmp_path_factory):
    """The offline algorithms read LeRobot datasets: no hub, a cache of the test's own (inherited by the
    server and fresh processes)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
        yield


@pytest.fixture(scope="module")
def pendulum_dataset(tmp_path_factory) -> str:
    """Three short episodes of Pendulum-v1's shapes (3 floats observed, 1 torque), named as recorded there."""
    out = tmp_path_factory.mktemp("data") / "pendulum"
    testing.write_dataset(out, state_dim=3, image_shape=None, action_dim=1, metadata={"env": "Pendulum-v1"})
    return str(out)


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def run(request, tmp_path_factory) -> Run:
    case = request.param
    if hasattr(case.algo, "data"):
        data = dataclasses.replace(case.algo.data, dataset=request.getfixturevalue("pendulum_dataset"))
        case = dataclasses.replace(case, algo=dataclasses.replace(case.algo, data=data))
    out = tmp_path_factory.mktemp(case.name)
    runner = RunnerConfig(output_dir=str(out), eval_episodes=0, wandb_mode="disabled")
    config = TrainConfig(name=case.name, env=case.env, algo=case.algo, runner=runner)
    result = training.train(config)
    algorithm = training.make_algorithm(config)
    space = algorithm.env.observation_space(algorithm.env_params)
    obs = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(3), NUM_OBS)))
    assert obs.dtype == space.dtype
    key = "observation.image" if len(space.shape) == 3 else "observation.state"
    return Run(case, result.run_dir, algorithm, result.state, key, obs)


def in_memory_actions(run: Run) -> np.ndarray:
    """The training state's greedy actions, one observation per (jitted) call."""
    algorithm = run.algorithm

    @jax.jit
    def act(state: Any, obs: jax.Array) -> jax.Array:
        return algorithm.act(state.params, algorithm.policy_input(algorithm.obs_stats(state), obs), None, greedy=True)

    return np.stack([np.asarray(act(run.state, run.obs[i : i + 1]))[0] for i in range(NUM_OBS)])


def test_memory_fresh_process_and_server_give_the_same_actions(run, tmp_path):
    obs_path, fresh_path = tmp_path / "obs.npy", tmp_path / "fresh.npy"
    np.save(obs_path, run.obs)
    fresh = subprocess.Popen(
        [sys.executable, "-c", _FRESH_PROCESS, run.run_dir, str(obs_path), str(fresh_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        server_args = ("--policy.dir", run.run_dir, "--policy.step", "latest", "--max-batch", "1")
        with (
            ServerProcess(*server_args, module="vibe.serving.serve", timeout_s=300) as server,
            WebsocketClientPolicy("127.0.0.1", server.port, recv_timeout_s=60, connect_timeout_s=60) as client,
        ):
            replies = [client.infer({run.obs_key: o}) for o in run.obs]
            metadata = client.get_server_metadata()
            # What the server validates against is the policy's metadata: another dtype is refused.
            other = np.float32 if run.obs.dtype == np.bool_ else np.float64
            expects = f"has dtype {np.dtype(other).name}; the policy expects {run.obs.dtype.name}"
            with pytest.raises(RuntimeError, match=expects):
                client.infer({run.obs_key: run.obs[0].astype(other)})
        log, _ = fresh.communicate(timeout=300)
    finally:
        if fresh.poll() is None:  # the server failed: do not leave the other process behind
            fresh.kill()
            fresh.wait()
    assert fresh.returncode == 0, log

    want = in_memory_actions(run)
    served = np.stack([np.asarray(r["actions"]) for r in replies])
    assert {r["server_timing"]["batch_size"] for r in replies} == {1}
    np.testing.assert_array_equal(np.load(fresh_path), want)
    np.testing.assert_array_equal(served, want)
    assert served.dtype == want.dtype
    spec = {"shape": list(run.obs.shape[1:]), "dtype": run.obs.dtype.name}
    assert metadata["observation"] == {run.obs_key: spec}
    assert metadata["env"] == run.case.env and metadata["step"] == run.algorithm.num_updates


def test_padded_batches_match_the_unpadded_batch(run):
    """Rows of the server's padded batches (copies of the last row up to 1, 2, 4, 8) against the batch alone."""
    policy = create_trained_policy(run.run_dir, step="latest")
    batcher = Batcher(policy, [run.obs_key], max_batch=8, max_wait_s=0.0, max_queue=8)
    rows = [{run.obs_key: o} for o in run.obs[:8]]
    for n in range(1, 9):
        padded, size, _ = batcher.run_padded(rows[:n])
        assert size == next(s for s in batcher.sizes if s >= n)
        alone = policy.infer_batch({run.obs_key: run.obs[:n]})["actions"]
        got = padded["actions"][:n]
        if np.issubdtype(alone.dtype, np.integer):
            np.testing.assert_array_equal(got, alone)
        else:
            np.testing.assert_allclose(got, alone, rtol=1e-6, atol=1e-6)
