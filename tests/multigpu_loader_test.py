"""The data loaders and offline training on 4 devices against 1 (4 emulated CPU devices: `//tests:multigpu`).

A LeRobot dataset recorded by ``record_dataset`` (random CartPole, 6 episodes) is read by both loader paths:
on 4 devices every batch is split over ``DATA_AXIS`` (4 rows a device) and holds the same values, shapes
and dtypes as on 1 device and as the dataset's own rows; the in-memory path gathers exactly the streaming
path's rows for the same seed. Then BC trains through the runner on 1 and 4 devices, on each path, to the
same parameters (tolerance as in multigpu_runner_test: only the order of reductions differs).
"""

import dataclasses
import os
import pathlib
import tempfile
from typing import Any

import jax
import numpy as np
import pytest

from vibe.config import presets
from vibe.data import loader as L
from vibe.data.lerobot_reader import LeRobotReader
from vibe.scripts import record_dataset, training
from vibe.sharding.mesh import DATA_AXIS, make_mesh
from vibe.train.config import RunnerConfig

os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vibe-hf-")  # lerobot's caches stay in the sandbox
os.environ["HF_HUB_OFFLINE"] = "1"

if jax.device_count() != 4:  # a fail, not a skip (a target whose tests all skip passes)
    pytest.fail(f"needs 4 devices, sees {jax.device_count()}: run it as //tests:multigpu", pytrace=False)

BATCH = 16
ATOL = 1e-5
# Field: (dtype on the devices, shape of a batch). Actions are int64 in the dataset: int32 without x64.
FIELDS = {
    "observation.state": (np.float32, (BATCH, 4)),
    "action": (np.int32, (BATCH, 2)),  # horizon 2
    "action_is_pad": (np.bool_, (BATCH, 2)),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("data") / "cartpole_random"
    args = record_dataset.Args(out=str(out), policy="random", env="CartPole-v1", episodes=6, progress=False)
    return record_dataset.record(args)


def meshes() -> dict[int, Any]:
    return {n: make_mesh(1, jax.devices()[:n]) for n in (1, 4)}


def numpy(batch: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in batch.items()}


def assert_split_over_four(batch: dict[str, jax.Array]) -> None:
    for key, value in batch.items():
        assert value.sharding.mesh.size == 4, key
        assert value.sharding.spec[0] == DATA_AXIS, (key, value.sharding.spec)
        assert {shard.data.shape[0] for shard in value.addressable_shards} == {BATCH // 4}, key


def test_both_loader_paths_on_four_devices_equal_one_device_and_the_dataset(dataset: pathlib.Path) -> None:
    reader = LeRobotReader(dataset, action_horizon=2, keys=list(FIELDS)[:2])
    config = L.LoaderConfig(batch_size=BATCH, num_workers=0, seed=5)
    streams = {n: L.StreamingLoader(reader, mesh, config) for n, mesh in meshes().items()}
    batches_per_epoch = streams[1].sampler.batches_per_epoch
    count = batches_per_epoch + 2  # into the second epoch
    streamed = {n: [next(stream) for _ in range(count)] for n, stream in streams.items()}
    arrays = L.load_arrays(reader)
    in_memory = {n: L.to_device(arrays, mesh) for n, mesh in meshes().items()}
    for i, (one, four) in enumerate(zip(streamed[1], streamed[4], strict=True)):
        assert_split_over_four(four)
        epoch, index = divmod(i, batches_per_epoch)
        rows = streams[1].sampler.local_indices(epoch, index)
        want = reader.get_batch(rows)
        assert set(one) == set(four) == set(FIELDS)
        for key, (dtype, shape) in FIELDS.items():
            assert four[key].dtype == one[key].dtype == dtype, key
            assert four[key].shape == one[key].shape == shape, key
            np.testing.assert_array_equal(np.asarray(four[key]), np.asarray(one[key]), err_msg=key)
            np.testing.assert_array_equal(np.asarray(four[key]), want[key], err_msg=key)
        # The in-memory path, given the streaming path's rows, gathers the same batch on either mesh.
        for n in (1, 4):
            gathered = numpy(jax.jit(L.gather)(in_memory[n], rows))
            for key in FIELDS:
                np.testing.assert_array_equal(gathered[key], np.asarray(four[key]), err_msg=key)

    # In memory, sampled inside jit: batch i of the same key is the same on 1 and 4 devices, split on 4.
    key = jax.random.key(3)
    sampled = {n: L.InMemoryLoader(in_memory[n], mesh, BATCH, key) for n, mesh in meshes().items()}
    for _ in range(3):
        one, four = next(sampled[1]), next(sampled[4])
        assert_split_over_four(four)
        for name, (dtype, shape) in FIELDS.items():
            assert four[name].dtype == one[name].dtype == dtype and four[name].shape == shape, name
            np.testing.assert_array_equal(np.asarray(four[name]), np.asarray(one[name]), err_msg=name)


def bc_config(dataset: pathlib.Path, out: pathlib.Path, loader: str, devices: int) -> Any:
    base = presets.get("cartpole_bc")
    algo = dataclasses.replace(
        base.algo,
        num_updates=8,
        data=dataclasses.replace(base.algo.data, dataset=str(dataset), batch_size=BATCH, loader=loader, num_workers=0),
    )
    runner = RunnerConfig(
        output_dir=str(out), exp_name=f"{loader}{devices}", devices=devices, eval_episodes=0, updates_per_chunk=4,
        wandb_mode="disabled",
    )  # fmt: skip
    return dataclasses.replace(base, algo=algo, runner=runner)


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_bc_on_four_devices_trains_the_params_of_one(
    dataset: pathlib.Path, tmp_path: pathlib.Path, loader: str
) -> None:
    results = {n: training.train(bc_config(dataset, tmp_path, loader, n)) for n in (1, 4)}
    start = jax.jit(training.make_algorithm(bc_config(dataset, tmp_path, loader, 1)).init)(
        jax.random.split(jax.random.PRNGKey(0))[0]
    )
    assert int(results[1].state.step) == int(results[4].state.step) == 8
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), results[1].state.params.net, start.params.net)
    assert all(jax.tree.leaves(moved)), moved
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(results[1].state.params)[0]]
    for path, a, b in zip(
        paths, jax.tree.leaves(results[4].state.params), jax.tree.leaves(results[1].state.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=ATOL, err_msg=path)
    for leaf in jax.tree.leaves(results[4].state.params):  # small kernels: replicated on the 4 devices
        assert leaf.sharding.mesh.size == 4 and all(axis is None for axis in leaf.sharding.spec)
