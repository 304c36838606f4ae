"""The host loop: one compile per run, chunk sums turned into means, rows, evaluations and the best step."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.ppo.ppo import PPO
from vibe.checkpoint import manager as checkpoints
from vibe.checkpoint.config import CheckpointConfig
from vibe.envs import gymnax_env
from vibe.logging.metrics import read_metrics
from vibe.networks.config import EncoderConfig
from vibe.train import runner
from vibe.train.config import RunnerConfig
from vibe.train.loop import make_train_chunk


@pytest.fixture(scope="module")
def algo():
    config = PPOConfig(num_envs=2, num_steps=8, total_timesteps=16 * 7, encoder=EncoderConfig(hidden_sizes=(32, 32)))
    return PPO.make(config, *gymnax_env.make("CartPole-v1"))


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
    np.testing.assert_allclose(totals.per_update["loss/total"], sums.per_update["loss/total"], rtol=1e-5)
    np.testing.assert_allclose(totals.episode_count, sums.episode_count)


def test_train_logs_a_row_per_chunk_evaluations_and_keeps_the_best_step(algo, tmp_path):
    config = RunnerConfig(
        output_dir=str(tmp_path),
        updates_per_chunk=4,
        eval_episodes=3,
        eval_every=3,
        wandb_mode="disabled",
        checkpoint=CheckpointConfig(save_interval=6),
    )
    result = runner.train(algo, config, run_name="t", hparams={"name": "t"}, env_id="CartPole-v1")
    assert int(result.state.step) == algo.num_updates == 7
    assert result.env_steps == 7 * 16
    assert result.eval_returns.shape == (3,)
    run_dir = tmp_path / "t" / "default"
    rows = read_metrics(str(run_dir / "metrics.jsonl"))
    train_rows = [r for r in rows if "update" in r]
    eval_rows = [r for r in rows if "eval/return_mean" in r]
    # Chunks end on evaluation points (3, 6) and on the end: updates 3, 6, 7.
    assert [r["update"] for r in train_rows] == [3, 6, 7]
    assert [r["step"] for r in train_rows] == [48, 96, 112]
    assert all(r["loss/total"] != 0.0 and r["sps"] > 0 for r in train_rows)
    assert [r["step"] for r in eval_rows] == [48, 96, 112]
    assert eval_rows[-1]["eval/return_mean"] == pytest.approx(float(result.eval_returns.mean()))
    best_step = max(eval_rows, key=lambda r: r["eval/return_mean"])["step"] // 16
    # Saved every 6 updates and at the end; a better evaluation in between is saved too and marked best.
    assert checkpoints.best_step(str(run_dir)) == best_step
    assert json.loads((run_dir / "config.json").read_text()) == {"name": "t"}


def test_user_paths_resolve_against_the_directory_the_user_ran_from(monkeypatch, tmp_path):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    assert runner.user_path("checkpoints/x") == str(tmp_path / "checkpoints" / "x")
    assert runner.user_path("/abs/x") == "/abs/x"


def test_fsdp_split_is_logged_even_when_nothing_is_split(caplog):
    from jax.sharding import AbstractMesh, AxisType

    from vibe.sharding import fsdp

    mesh = AbstractMesh((1, 2), ("batch", "fsdp"), axis_types=(AxisType.Auto,) * 2)
    params = {"w": jax.ShapeDtypeStruct((2048, 1024), jnp.float32), "b": jax.ShapeDtypeStruct((1024,), jnp.float32)}
    with caplog.at_level("INFO"):
        assert runner.log_fsdp_split(params, fsdp.fsdp_sharding(params, mesh)) == (1, 1)
    assert "1 parameter array(s) (8.00 MiB) split along 'fsdp', 1 (0.00 MiB) replicated" in caplog.text
    small = {"b": params["b"]}
    with caplog.at_level("INFO"):
        assert runner.log_fsdp_split(small, fsdp.fsdp_sharding(small, mesh)) == (0, 1)
    assert "none reaches the 4 MiB threshold" in caplog.text


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_no_directory(algo, tmp_path, monkeypatch):
    config = RunnerConfig(output_dir=str(tmp_path), eval_episodes=0, wandb_mode="disabled")

    def broken(*args, **kwargs):
        raise RuntimeError("compile failed")

    monkeypatch.setattr(runner, "make_train_chunk", broken)
    with pytest.raises(RuntimeError, match="compile failed"):
        runner.train(algo, config, run_name="t", hparams={}, env_id="CartPole-v1")
    assert not (tmp_path / "t" / "default").exists()
    monkeypatch.undo()
    result = runner.train(algo, config, run_name="t", hparams={}, env_id="CartPole-v1")  # not refused
    assert int(result.state.step) == algo.num_updates
