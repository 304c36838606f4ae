"""The runner on 1, 2 and 4 devices (4 emulated CPU devices: see `//tests:multigpu` in tests/BUILD.bazel).

The same global batch (same envs, same seed) must give the same parameters on
any mesh: envs are split over the devices, parameters replicated or FSDP-split,
and only the order of floating-point reductions may differ. Tolerance 1e-5
(Adam divides by the gradients' running RMS, so rounding differences of the
sums do not shrink with the step size).
"""

import dataclasses
import shutil
from typing import Any

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.config.train_config import TrainConfig
from vibe.networks.config import EncoderConfig
from vibe.scripts import training
from vibe.sharding.mesh import DATA_AXIS
from vibe.train.config import RunnerConfig
from vibe.train.runner import TrainResult

# A fail, not a skip: Bazel reports a target whose tests all skipped as passed.
if jax.device_count() != 4:
    pytest.fail(
        f"needs 4 devices, sees {jax.device_count()}: run it as //tests:multigpu, or with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu",
        pytrace=False,
    )

ATOL = 1e-5
SMALL = EncoderConfig(hidden_sizes=(32, 32))  # PPO's default activation (tanh)
SMALL_RELU = EncoderConfig(hidden_sizes=(32, 32), activation="relu")  # DQN's and SAC's default activation
# 4 envs each: on 4 devices every device steps one env. Each run has several updates with gradient steps.
ALGOS = {
    "ppo": ("CartPole-v1", PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 6, encoder=SMALL)),
    "dqn": (
        "CartPole-v1",
        DQNConfig(
            num_envs=4,
            total_timesteps=4 * 24,
            learning_starts=32,
            buffer_size=256,
            batch_size=32,
            target_update_interval=4,
            encoder=SMALL_RELU,
        ),
    ),
    "sac": (
        "Pendulum-v1",
        SACConfig(
            num_envs=4, total_timesteps=4 * 24, learning_starts=32, buffer_size=256, batch_size=32, encoder=SMALL_RELU
        ),
    ),
}


def train(tmp_path: Any, name: str, env: str, algo: Any, *, devices: int, **runner: Any) -> TrainResult:
    runner = {"eval_episodes": 0, "wandb_mode": "disabled", "updates_per_chunk": 4, **runner}
    exp_name = runner.pop("exp_name", f"d{devices}f{runner.get('fsdp_devices', 1)}")
    config = TrainConfig(
        name=name,
        env=env,
        algo=algo,
        runner=RunnerConfig(output_dir=str(tmp_path), exp_name=exp_name, devices=devices, **runner),
    )
    return training.train(config)


def assert_params_close(actual: Any, expected: Any) -> None:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
    for path, a, b in zip(paths, jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=ATOL, err_msg=path)


def optimizer_steps(state: Any) -> np.ndarray:
    """Gradient steps the state has taken (per seed under num_seeds): its optimizer's step count."""
    paths = jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
    counts = [np.asarray(leaf) for path, leaf in paths if jax.tree_util.keystr(path).endswith(".count")]
    assert counts and all(np.array_equal(c, counts[0]) for c in counts), counts
    return counts[0]


def initial_state(algorithm: Any, seed: int = 0) -> Any:
    """The state the runner starts a run of `seed` from: init with the first half of the seed's key split."""
    return jax.jit(algorithm.init)(jax.random.split(jax.random.PRNGKey(seed))[0])


@pytest.mark.parametrize("name", ALGOS)
def test_one_two_and_four_devices_train_the_same_params(tmp_path: Any, name: str) -> None:
    env, algo = ALGOS[name]
    algorithm = training.make_algorithm(TrainConfig(name, env, algo))
    results = {n: train(tmp_path, name, env, algo, devices=n) for n in (1, 2, 4)}
    for n, result in results.items():
        assert result.state.obs.sharding.mesh.size == n
        # The envs' observations [4, obs] are split over the devices: one or more rows each.
        assert result.state.obs.sharding.spec == PartitionSpec(DATA_AXIS, None)
        assert {s.data.shape[0] for s in result.state.obs.addressable_shards} == {4 // n}
        assert int(result.state.step) == results[1].state.step == algorithm.num_updates
    # The runs trained: every parameter moved away from the runner's own initial state, by gradient steps.
    start = initial_state(algorithm)
    assert int(start.step) == int(optimizer_steps(start)) == 0
    assert optimizer_steps(results[1].state) > 0
    if name == "dqn":
        assert int(results[1].state.gradient_steps) == int(optimizer_steps(results[1].state))
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), results[1].state.params, start.params)
    assert all(jax.tree.leaves(moved)), moved
    for n in (2, 4):
        assert_params_close(results[n].state.params, results[1].state.params)
        assert_params_close(results[n].state.opt_state, results[1].state.opt_state)  # counts included


def large_kernel(params: Any) -> tuple[str, jax.Array]:
    """The first 1024 × 1024 kernel: 4 MiB of float32, at the FSDP threshold."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if leaf.shape == (1024, 1024):
            return jax.tree_util.keystr(path), leaf
    raise AssertionError("no 1024 × 1024 kernel")


def test_fsdp_splits_large_kernels_and_trains_the_same_params(tmp_path: Any) -> None:
    big = EncoderConfig(hidden_sizes=(1024, 1024))
    algo = PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, encoder=big)
    expected = train(tmp_path, "ppo", "CartPole-v1", algo, devices=1)
    for k in (2, 4):
        result = train(tmp_path, "ppo", "CartPole-v1", algo, devices=4, fsdp_devices=k)
        path, kernel = large_kernel(result.state.params)
        assert "fsdp" in kernel.sharding.spec, (path, kernel.sharding)
        assert {s.data.size for s in kernel.addressable_shards} == {1024 * 1024 // k}
        # Adam's moments of that kernel are split the same way.
        _, moment = large_kernel(result.state.opt_state)
        assert moment.sharding.spec == kernel.sharding.spec
        assert_params_close(result.state.params, expected.state.params)
        assert_params_close(result.state.opt_state, expected.state.opt_state)
    assert optimizer_steps(expected.state) > 0


def test_seeds_vmapped_on_four_devices_equal_one_device(tmp_path: Any) -> None:
    env, algo = ALGOS["ppo"]
    one = train(tmp_path, "ppo", env, algo, devices=1, num_seeds=2)
    four = train(tmp_path, "ppo", env, algo, devices=4, num_seeds=2)
    assert four.state.obs.shape[:2] == (2, 4) and four.state.obs.sharding.spec == PartitionSpec(None, DATA_AXIS, None)
    assert_params_close(four.state.params, one.state.params)
    assert_params_close(four.state.opt_state, one.state.opt_state)
    assert (optimizer_steps(one.state) > 0).all() and optimizer_steps(one.state).shape == (2,)


def test_checkpoint_saved_on_four_devices_resumes_on_one_and_two(tmp_path: Any) -> None:
    env, algo = ALGOS["ppo"]
    checkpoint = {"checkpoint": dataclasses.replace(RunnerConfig().checkpoint, save_interval=2)}
    straight = train(tmp_path, "ppo", env, algo, devices=4, exp_name="straight", **checkpoint)
    half = train(tmp_path, "ppo", env, algo, devices=4, exp_name="half", stop_after_updates=3, **checkpoint)
    assert int(half.state.step) == 3
    shutil.copytree(tmp_path / "ppo" / "half", tmp_path / "ppo" / "half_copy")
    for devices, exp_name in ((1, "half"), (2, "half_copy")):
        resumed = train(tmp_path, "ppo", env, algo, devices=devices, exp_name=exp_name, resume=True, **checkpoint)
        assert resumed.start_env_step == 3 * algo.batch_size  # continued from the 4-device checkpoint
        assert resumed.state.obs.sharding.mesh.size == devices
        assert_params_close(resumed.state.params, straight.state.params)
        assert_params_close(resumed.state.opt_state, straight.state.opt_state)
