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
from vibe.scripts import training
from vibe.sharding.mesh import DATA_AXIS
from vibe.train.config import RunnerConfig
from vibe.train.runner import TrainResult

pytestmark = pytest.mark.skipif(
    jax.device_count() != 4,
    reason="needs 4 devices: XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu",
)

ATOL = 1e-5
SMALL = (32, 32)
# 4 envs each: on 4 devices every device steps one env. Each run has several updates with gradient steps.
ALGOS = {
    "ppo": ("CartPole-v1", PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 6, hidden_sizes=SMALL)),
    "dqn": (
        "CartPole-v1",
        DQNConfig(
            num_envs=4,
            total_timesteps=4 * 24,
            learning_starts=32,
            buffer_size=256,
            batch_size=32,
            target_update_interval=4,
            hidden_sizes=SMALL,
        ),
    ),
    "sac": (
        "Pendulum-v1",
        SACConfig(
            num_envs=4, total_timesteps=4 * 24, learning_starts=32, buffer_size=256, batch_size=32, hidden_sizes=SMALL
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


@pytest.mark.parametrize("name", ALGOS)
def test_one_two_and_four_devices_train_the_same_params(tmp_path: Any, name: str) -> None:
    env, algo = ALGOS[name]
    results = {n: train(tmp_path, name, env, algo, devices=n) for n in (1, 2, 4)}
    for n, result in results.items():
        assert result.state.obs.sharding.mesh.size == n
        # The envs' observations [4, obs] are split over the devices: one or more rows each.
        assert result.state.obs.sharding.spec == PartitionSpec(DATA_AXIS, None)
        assert {s.data.shape[0] for s in result.state.obs.addressable_shards} == {4 // n}
        assert int(result.state.step) == results[1].state.step > 0
    assert not np.array_equal(  # the runs trained: params moved away from the initial ones
        jax.tree.leaves(results[1].state.params)[0],
        jax.tree.leaves(jax.jit(training.make_algorithm(TrainConfig(name, env, algo)).init)(jax.random.PRNGKey(0)))[0],
    )
    for n in (2, 4):
        assert_params_close(results[n].state.params, results[1].state.params)
        assert_params_close(results[n].state.opt_state, results[1].state.opt_state)


def large_kernel(params: Any) -> tuple[str, jax.Array]:
    """The first 1024 × 1024 kernel: 4 MiB of float32, at the FSDP threshold."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if leaf.shape == (1024, 1024):
            return jax.tree_util.keystr(path), leaf
    raise AssertionError("no 1024 × 1024 kernel")


def test_fsdp_splits_large_kernels_and_trains_the_same_params(tmp_path: Any) -> None:
    algo = PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, hidden_sizes=(1024, 1024))
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


def test_seeds_vmapped_on_four_devices_equal_one_device(tmp_path: Any) -> None:
    env, algo = ALGOS["ppo"]
    one = train(tmp_path, "ppo", env, algo, devices=1, num_seeds=2)
    four = train(tmp_path, "ppo", env, algo, devices=4, num_seeds=2)
    assert four.state.obs.shape[:2] == (2, 4) and four.state.obs.sharding.spec == PartitionSpec(None, DATA_AXIS, None)
    assert_params_close(four.state.params, one.state.params)


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
