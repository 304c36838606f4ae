"""Offline chains end to end: expert -> record_dataset -> LeRobot -> vibe's loaders -> BC / IQL, and bad input.

- The expert chain (``learning``): PPO CartPole trained by ``training.train``, 16 greedy episodes recorded
  with ``record_dataset``; lerobot's own ``LeRobotDataset`` reads them back (length, features, episode
  boundaries, values equal to a re-run of the same rollouts); vibe's in-memory batches have the right
  shapes, dtypes and values, and the in-memory and streaming paths give the same batch for the same rows
  of the same seed; ``cartpole_bc`` reaches a greedy return >= 475 and its policy rebuilds from the run alone.
- IQL beats BC (``learning``): a mixed Pendulum dataset (a 20k-step ``pendulum_sac`` expert's episodes plus
  uniformly random ones, each recorded with ``record_dataset`` and merged with ``--merge``), the same seed:
  ``pendulum_iql`` (4k updates) ends with a greedy return clearly above ``pendulum_bc``'s (measured: -771
  against -1216, the expert -143; ~2.5 min on 2 busy cores).
- Discrete IQL from random data (``learning``, ~50 s): ``cartpole_iql`` on 100 uniformly random CartPole
  episodes (mean return ~22) ends with a greedy return several times the data's (measured: 243, best 330),
  and its checkpoint serves through ``create_trained_policy`` with the in-memory state's actions.
- Bad input: not a dataset, a missing feature, a horizon longer than an episode, a dataset of another env:
  each a one-line error naming the path and the key/field, exit status 2, no run directory written.
"""

import dataclasses
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.config import presets
from vibe.data import loader as loaders
from vibe.data import record, testing
from vibe.data.lerobot_reader import LeRobotReader
from vibe.policies.trained import create_trained_policy
from vibe.scripts import record_dataset, train, training
from vibe.sharding import mesh as mesh_lib

EXPERT_EPISODES = 16  # one rollout batch of record_dataset; 8,000 expert frames


@pytest.fixture(autouse=True)
def hermetic_hf(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")


def run_preset(
    name: str, out: pathlib.Path, dataset: str | None = None, algo: dict[str, Any] | None = None, **runner: Any
) -> Any:
    config: Any = presets.get(name)
    if dataset is not None:
        config = dataclasses.replace(
            config, algo=dataclasses.replace(config.algo, data=dataclasses.replace(config.algo.data, dataset=dataset))
        )
    if algo:
        config = dataclasses.replace(config, algo=dataclasses.replace(config.algo, **algo))
    runner_config = dataclasses.replace(config.runner, output_dir=str(out), wandb_mode="disabled", **runner)
    return training.train(dataclasses.replace(config, runner=runner_config))


def record_args(**kwargs: Any) -> record_dataset.Args:
    return record_dataset.Args(progress=False, **kwargs)


@pytest.mark.learning
def test_expert_chain_cartpole(tmp_path: pathlib.Path) -> None:
    expert = run_preset("cartpole_ppo", tmp_path / "runs")
    assert expert.eval_returns is not None and expert.eval_returns.mean() >= 475
    root = record_dataset.record(
        record_args(run_dir=expert.run_dir, episodes=EXPERT_EPISODES, out=str(tmp_path / "expert"))
    )

    # lerobot reads it back: length, features, episode boundaries.
    from lerobot.datasets import LeRobotDataset

    ds = LeRobotDataset("local/expert", root=root, video_backend="pyav")
    episodes = ds.meta.episodes
    lengths = np.asarray(episodes["length"])
    assert len(lengths) == EXPERT_EPISODES and len(ds) == lengths.sum()
    np.testing.assert_array_equal(episodes["dataset_from_index"], np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    for key, shape in {"observation.state": (4,), "action": (1,), "next.reward": (1,), "next.done": (1,)}.items():
        assert tuple(ds.meta.features[key]["shape"]) == shape, key
    assert ds.meta.features["action"]["dtype"] == "int64"
    assert ds.meta.fps == record_dataset.DEFAULT_FPS

    # Values: the first two episodes equal a re-run of the same rollouts (record_episodes's keys, batch 16).
    policy = create_trained_policy(expert.run_dir, greedy=True)
    algo = policy.algorithm

    def act(obs: jax.Array, key: jax.Array) -> jax.Array:
        return algo.act(policy.params, algo.policy_input(policy.obs_stats, obs[None]), key, greedy=True)[0]

    keys = jax.random.split(jax.random.PRNGKey(0), EXPERT_EPISODES)[:16]
    rerun = jax.device_get(jax.jit(lambda k: record.rollout(algo.env, algo.env_params, act, k, 500))(keys))
    for e in range(2):
        start, n = int(episodes["dataset_from_index"][e]), int(lengths[e])
        frames = ds.hf_dataset.with_format("numpy")[start : start + n]
        assert n == int(rerun["alive"][e].sum())
        np.testing.assert_allclose(np.stack(frames["observation.state"]), rerun["obs"][e, :n], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.stack(frames["action"]).ravel(), rerun["action"][e, :n])
        np.testing.assert_array_equal(np.stack(frames["next.reward"]).ravel(), rerun["reward"][e, :n])
        np.testing.assert_array_equal(np.stack(frames["next.done"]).ravel(), rerun["terminated"][e, :n])

    # vibe's loaders: shapes, dtypes and values; in-memory and streaming give the same batch for the same rows.
    reader = LeRobotReader(root, action_horizon=4)
    arrays = loaders.load_arrays(reader)
    mesh = mesh_lib.make_mesh(1, jax.devices()[:1])
    data = loaders.to_device(arrays, mesh)
    batch = jax.jit(loaders.sample_batch, static_argnums=2)(data, jax.random.PRNGKey(0), 64)
    assert batch["observation.state"].shape == (64, 4) and batch["observation.state"].dtype == jnp.float32
    assert batch["action"].shape == (64, 4) and batch["action"].dtype == jnp.int32
    assert batch["action_is_pad"].shape == (64, 4) and batch["action_is_pad"].dtype == jnp.bool_
    rows = np.asarray(batch["index"])
    np.testing.assert_array_equal(np.asarray(batch["observation.state"]), arrays["observation.state"][rows])
    config = loaders.LoaderConfig(batch_size=64, num_workers=0, seed=7)
    streamed = next(loaders.StreamingLoader(reader, mesh, config))
    same_rows = loaders.EpochSampler(len(reader), 64, 7, True, 0, 1).local_indices(0, 0)
    in_memory = jax.device_get(loaders.gather(data, jnp.asarray(same_rows)))
    for key in ("observation.state", "action", "action_is_pad", "next.reward", "index"):
        np.testing.assert_array_equal(np.asarray(streamed[key]), in_memory[key], err_msg=key)

    # BC from the expert's dataset reaches the threshold; its policy needs only the run directory.
    bc = run_preset("cartpole_bc", tmp_path / "runs", dataset=str(root))
    assert bc.eval_returns is not None
    print(f"cartpole_bc greedy return {bc.eval_returns.mean():.1f} over {len(bc.eval_returns)} episodes")
    assert bc.eval_returns.mean() >= 475
    bc_policy = create_trained_policy(bc.run_dir)
    out = bc_policy.infer({"observation.state": arrays["observation.state"][0]})
    assert int(out["actions"]) == int(arrays["action"][0, 0])


@pytest.mark.learning
def test_iql_beats_bc_on_mixed_pendulum_data(tmp_path: pathlib.Path) -> None:
    expert = run_preset("pendulum_sac", tmp_path / "runs", eval_episodes=8)
    sac = record_dataset.record(record_args(run_dir=expert.run_dir, episodes=10, out=str(tmp_path / "sac")))
    rand = record_dataset.record(
        record_args(policy="random", env="Pendulum-v1", episodes=40, seed=1, out=str(tmp_path / "random"))
    )
    mixed = record_dataset.record(record_args(merge=(str(sac), str(rand)), out=str(tmp_path / "mixed")))
    assert len(LeRobotReader(mixed, keys=["index"])) == 50 * 200
    bc = run_preset("pendulum_bc", tmp_path / "runs", dataset=str(mixed))
    # 4k of the preset's 20k updates (the learning-rate schedule is constant): IQL's best evaluation came at 2k.
    iql = run_preset("pendulum_iql", tmp_path / "runs", dataset=str(mixed), algo={"num_updates": 4_000})
    assert bc.eval_returns is not None and iql.eval_returns is not None
    bc_return, iql_return = float(bc.eval_returns.mean()), float(iql.eval_returns.mean())
    print(f"pendulum: expert {expert.eval_returns.mean():.1f}, BC {bc_return:.1f}, IQL {iql_return:.1f}")
    # Measured (seed 0): expert -143, BC -1216, IQL -771 after 4k updates (-669 after the preset's 20k; its
    # best evaluation, -490, came at 2k). BC clones the random actions too; IQL's advantage weights keep
    # mostly the expert's.
    assert iql_return > bc_return + 200


@pytest.mark.learning
def test_cartpole_iql_improves_on_random_data(tmp_path: pathlib.Path) -> None:
    episodes = 100
    root = record_dataset.record(
        record_args(policy="random", env="CartPole-v1", episodes=episodes, out=str(tmp_path / "random"))
    )
    data_return = len(LeRobotReader(root, keys=["index"])) / episodes  # CartPole pays 1 a step
    iql = run_preset("cartpole_iql", tmp_path / "runs", dataset=str(root))
    assert iql.eval_returns is not None
    iql_return = float(iql.eval_returns.mean())
    print(f"cartpole_iql from random data (mean return {data_return:.1f}): greedy return {iql_return:.1f}")
    # Measured (seeds 0, 1, 2): 243, 299, 324 from data of mean return ~22; cloning it (cartpole_bc) gives ~20.
    assert iql_return > 4 * data_return

    # The discrete checkpoint serves: integer actions, the in-memory state's, from the run directory alone.
    policy = create_trained_policy(iql.run_dir, step="latest")
    assert policy.metadata["algorithm"] == "iql"
    obs = LeRobotReader(root, keys=["observation.state"]).get_batch(np.arange(64))["observation.state"]
    obs = np.asarray(obs, np.float32).reshape(64, 4)
    served = np.asarray(policy.infer_batch({"observation.state": obs})["actions"])
    algo = policy.algorithm
    in_memory = algo.act(iql.state.params, jnp.asarray(obs), jax.random.PRNGKey(0), greedy=True)
    assert served.shape == (64,) and served.dtype == np.int32
    np.testing.assert_array_equal(served, np.asarray(in_memory))
    assert 0 < served.mean() < 1  # a state-dependent choice, not one action everywhere


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """A random CartPole dataset, a random Pendulum one, and an image-only synthetic one (no state)."""
    base = tmp_path_factory.mktemp("datasets")
    os.environ.setdefault("HF_HOME", str(base / "hf"))
    out = {
        "cartpole": record_dataset.record(
            record_args(policy="random", env="CartPole-v1", episodes=3, out=str(base / "cartpole"))
        ),
        "pendulum": record_dataset.record(
            record_args(policy="random", env="Pendulum-v1", episodes=2, out=str(base / "pendulum"))
        ),
    }
    testing.write_dataset(base / "images", state_dim=None, metadata={"env": "CartPole-v1"})
    out["images"] = base / "images"
    (base / "empty").mkdir()
    out["empty"] = base / "empty"
    return out


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], out: pathlib.Path) -> str:
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--output-dir", str(out), "--wandb-mode", "disabled"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert not out.exists(), "a refused run wrote something"
    return lines[0]


def test_bad_datasets_get_one_line_errors(
    small_datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    empty = str(small_datasets["empty"])
    line = one_line_error(capsys, ["cartpole_bc", "--data.dataset", empty], runs)
    assert empty in line and "not a LeRobot dataset" in line

    line = one_line_error(capsys, ["cartpole_bc"], runs)
    assert "--data.dataset" in line

    images = str(small_datasets["images"])
    line = one_line_error(capsys, ["cartpole_bc", "--data.dataset", images], runs)
    assert images in line and "'observation.state'" in line

    cartpole = str(small_datasets["cartpole"])
    line = one_line_error(capsys, ["cartpole_bc", "--data.dataset", cartpole, "--data.action-horizon", "600"], runs)
    assert cartpole in line and "action_horizon=600" in line

    pendulum = str(small_datasets["pendulum"])
    line = one_line_error(capsys, ["cartpole_bc", "--data.dataset", pendulum], runs)
    assert pendulum in line and "'observation.state'" in line and "CartPole-v1" in line

    line = one_line_error(capsys, ["pendulum_iql", "--data.dataset", cartpole], runs)
    assert cartpole in line and "'observation.state'" in line and "Pendulum-v1" in line


def test_record_dataset_refuses_an_existing_out(
    small_datasets: dict[str, pathlib.Path], capsys: pytest.CaptureFixture[str]
) -> None:
    existing = small_datasets["cartpole"]
    before = sorted(p.name for p in existing.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        record_dataset.main(["--policy", "random", "--env", "CartPole-v1", "--out", str(existing), "--no-progress"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(existing) in lines[0] and "--overwrite" in lines[0]
    assert sorted(p.name for p in existing.rglob("*")) == before


def test_random_recording_has_the_metadata_bc_needs(small_datasets: dict[str, pathlib.Path]) -> None:
    from vibe.data.lerobot_writer import read_vibe_metadata

    meta = read_vibe_metadata(small_datasets["pendulum"])
    assert meta is not None and meta["env"] == "Pendulum-v1" and meta["policy"] == "random"
    assert meta["action_space"]["type"] == "box" and meta["observation_space"]["shape"] == [3]
    reader = LeRobotReader(small_datasets["pendulum"], keys=["next.truncated", "next.done", "episode_index"])
    batch = reader.get_batch(np.arange(len(reader)))
    # gymnax Pendulum never terminates: every episode ends by the 200-step time limit, flagged truncated.
    assert len(reader) == 400 and batch["next.truncated"].sum() == 2 and not batch["next.done"].any()


@pytest.mark.parametrize("name, transitions", [("cartpole", False), ("pendulum", True)])
def test_streamed_rows_are_the_in_memory_rows(
    small_datasets: dict[str, pathlib.Path], name: str, transitions: bool
) -> None:
    """``--data.loader stream`` reads, batch by batch, exactly the rows the in-memory path holds: sample i is
    transition row ``rows[i]`` (a truncated episode's last frame is never one), next_obs included."""
    from vibe.algorithms.bc import data as offline_data
    from vibe.envs import registry

    env_id = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1"}[name]
    env, env_params = registry.make(env_id)
    config = dataclasses.replace(presets.get(f"{name}_bc").algo.data, dataset=str(small_datasets[name]))
    frames, _ = offline_data.open_frames(config, env, env_params, env_id=env_id, owner="test", transitions=transitions)
    arrays = frames.arrays()
    rows = arrays.pop("rows", np.arange(frames.num_frames))
    if transitions:  # two 200-step truncated episodes: all frames but each episode's last are transitions
        assert len(frames) == len(rows) == frames.num_frames - 2
    indices = np.random.default_rng(0).permutation(len(frames))[:64]
    streamed = loaders.collate(frames.__getitems__(indices.tolist()))
    assert set(streamed) == set(arrays)
    for key, values in arrays.items():
        np.testing.assert_array_equal(streamed[key], values[rows[indices]], err_msg=key)
        assert streamed[key].dtype == values.dtype, key
