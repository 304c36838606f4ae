"""The host loop: one compile per run, chunk sums turned into means."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.ppo.agent import PPO
from vibe.algorithms.ppo.config import PPOConfig
from vibe.envs import gymnax_env
from vibe.train import runner
from vibe.train.config import RunnerConfig
from vibe.train.loop import make_train_chunk, summarize


@pytest.fixture(scope="module")
def algo():
    config = PPOConfig(num_envs=2, num_steps=8, total_timesteps=16 * 7, hidden_sizes=(32, 32))
    return PPO(config, *gymnax_env.make("CartPole-v1"))


def test_train_chunk_compiles_once_across_calls_and_chunk_lengths(algo):
    chunk = make_train_chunk(algo.train_step)
    state = algo.init(jax.random.PRNGKey(0))
    for k in (3, 3, 1):
        state, _ = chunk(state, jnp.int32(k))
    assert int(state.step) == 7
    assert len(chunk.traces) == 1, "train_chunk was traced again: a state leaf changed dtype, shape or weak type"


def test_chunk_of_k_updates_equals_k_single_steps(algo):
    chunk = make_train_chunk(algo.train_step)
    chunked, totals = chunk(algo.init(jax.random.PRNGKey(1)), jnp.int32(3))
    stepped = algo.init(jax.random.PRNGKey(1))
    sums = None
    for _ in range(3):
        stepped, metrics = jax.jit(algo.train_step)(stepped)
        sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), chunked.params, stepped.params)
    np.testing.assert_allclose(totals["loss/total"], sums["loss/total"], rtol=1e-5)


def test_summarize_divides_episode_sums_by_count_and_losses_by_updates():
    totals = {"episode/return_sum": 30.0, "episode/length_sum": 60.0, "episode/count": 3.0, "loss/total": 8.0}
    assert summarize(totals, num_updates=4) == {
        "episode/return_mean": 10.0,
        "episode/length_mean": 20.0,
        "episode/count": 3.0,
        "loss/total": 2.0,
    }
    assert "episode/return_mean" not in summarize({"episode/return_sum": 0.0, "episode/count": 0.0}, 1)


def test_train_runs_every_update_with_a_shorter_last_chunk(algo, tmp_path):
    config = RunnerConfig(output_dir=str(tmp_path), updates_per_chunk=4, eval_episodes=3, wandb_mode="disabled")
    result = runner.train(algo, config, run_name="t", hparams={})
    assert int(result.state.step) == algo.num_updates == 7
    assert result.env_steps == 7 * 16
    assert result.eval_returns.shape == (3,)
    assert (tmp_path / "t" / "default" / "metrics.jsonl").exists()


def test_user_paths_resolve_against_the_directory_the_user_ran_from(monkeypatch, tmp_path):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    assert runner.user_path("checkpoints/x") == str(tmp_path / "checkpoints" / "x")
    assert runner.user_path("/abs/x") == "/abs/x"
