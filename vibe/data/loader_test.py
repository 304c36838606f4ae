import contextlib
import os
import tempfile

import jax
import numpy as np
import pytest

from vibe.data import loader as L
from vibe.data import testing, transforms
from vibe.data.dataset import ArrayDataset
from vibe.data.lerobot_reader import LeRobotReader
from vibe.sharding.mesh import DATA_AXIS, make_mesh

# datasets/lerobot read HF_HOME when first imported (lazily, inside the calls below): keep caches hermetic.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vibe-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"  # and never reach the network
# Two CPU devices, so batches really split; if another module in this process already started JAX's
# backend the update fails and the multi-device test skips.
with contextlib.suppress(RuntimeError):
    jax.config.update("jax_num_cpu_devices", 2)


def _dataset(n: int = 20) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset(
        {
            "state": rng.normal(size=(n, 3)).astype(np.float32),
            "index": np.arange(n, dtype=np.int64),
            "image": rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
            "done": np.arange(n) % 5 == 4,
        }
    )


def _numpy(batch):
    return {k: np.asarray(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(1, jax.devices()[:1])


def test_both_paths_give_the_same_shapes_dtypes_and_values(mesh):
    ds = _dataset()
    data = L.to_device(L.load_arrays(ds), mesh)
    stream = L.StreamingLoader(ds, mesh, L.LoaderConfig(batch_size=4, num_workers=0))
    streamed = next(stream)
    indices = stream.sampler.local_indices(0, 0)
    gathered = jax.jit(L.gather)(data, indices)
    sampled = jax.jit(L.sample_batch, static_argnums=2)(data, jax.random.key(0), 4)
    assert set(streamed) == set(gathered) == set(sampled) == {"state", "index", "image", "done"}
    for k in streamed:
        assert streamed[k].shape == gathered[k].shape == sampled[k].shape, k
        assert streamed[k].dtype == gathered[k].dtype == sampled[k].dtype, k
        np.testing.assert_array_equal(np.asarray(streamed[k]), np.asarray(gathered[k]))
    assert streamed["index"].dtype == np.int32  # x64 is off: int64 arrives as JAX's int32
    np.testing.assert_array_equal(np.asarray(streamed["index"]), indices)
    # In memory: exact given the key, every row a real row of the dataset.
    again = jax.jit(L.sample_batch, static_argnums=2)(data, jax.random.key(0), 4)
    np.testing.assert_array_equal(np.asarray(sampled["state"]), np.asarray(again["state"]))
    rows = np.asarray(sampled["index"])
    np.testing.assert_array_equal(np.asarray(sampled["state"]), ds.arrays["state"][rows])


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_resume_yields_the_uninterrupted_batches(mesh, workers):
    ds = _dataset()  # 20 samples, batch 4: 5 batches an epoch; 8 batches cross into epoch 1
    config = L.LoaderConfig(batch_size=4, num_workers=workers, seed=3, mp_context="fork")  # numpy-only workers
    uninterrupted = L.StreamingLoader(ds, mesh, config)
    straight = [_numpy(next(uninterrupted)) for _ in range(8)]
    first = L.StreamingLoader(ds, mesh, config)
    head = [_numpy(next(first)) for _ in range(3)]
    state = first.get_state()
    assert state == {"epoch": 0, "batch": 3}
    resumed = L.StreamingLoader(ds, mesh, config, state=state)
    tail = [_numpy(next(resumed)) for _ in range(5)]
    assert resumed.get_state() == {"epoch": 1, "batch": 3}
    for got, want in zip(head + tail, straight, strict=True):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    epoch0 = np.concatenate([b["index"] for b in straight[:5]])
    assert sorted(epoch0.tolist()) == list(range(20))  # an epoch is a permutation
    epoch1_head = np.concatenate([b["index"] for b in straight[5:]])
    assert not np.array_equal(epoch1_head, epoch0[:12])  # each epoch has its own permutation


def test_in_memory_loader_resumes_from_its_step(mesh):
    data = L.to_device(L.load_arrays(_dataset()), mesh)
    key = jax.random.key(7)
    a = L.InMemoryLoader(data, mesh, 4, key)
    batches = [_numpy(next(a)) for _ in range(3)]
    b = L.InMemoryLoader(data, mesh, 4, key, step=a.get_state()["step"] - 1)
    np.testing.assert_array_equal(_numpy(next(b))["state"], batches[2]["state"])


def test_each_process_reads_its_slice_of_the_global_batch():
    whole = L.EpochSampler(24, 8, seed=1, shuffle=True, process_index=0, process_count=1)
    parts = [L.EpochSampler(24, 8, seed=1, shuffle=True, process_index=p, process_count=2) for p in (0, 1)]
    for epoch, batch in ((0, 0), (0, 2), (5, 1)):
        joined = np.concatenate([p.local_indices(epoch, batch) for p in parts])
        np.testing.assert_array_equal(joined, whole.local_indices(epoch, batch))


def test_batch_errors(mesh):
    with pytest.raises(ValueError, match="larger than the dataset"):
        L.StreamingLoader(_dataset(3), mesh, L.LoaderConfig(batch_size=4))
    with pytest.raises(ValueError, match="must divide by the 1 devices of the mesh \\(and the 2 processes\\)"):
        L.StreamingLoader(_dataset(), mesh, L.LoaderConfig(batch_size=3), process_index=0, process_count=2)


def test_lerobot_reader_through_worker_processes(mesh, tmp_path):
    testing.write_dataset(tmp_path / "ds", lengths=(10, 8))
    reader = LeRobotReader(tmp_path / "ds", action_horizon=3)
    repack = transforms.Repack({"image": "observation.image", "actions": "action", "pad": "action_is_pad"})
    stream = L.StreamingLoader(
        reader, mesh, L.LoaderConfig(batch_size=6, num_workers=2, mp_context="fork"), transform=repack
    )
    for i in range(4):  # 3 batches an epoch: crosses into epoch 1
        batch = _numpy(next(stream))
        want = reader.get_batch(stream.sampler.local_indices(i // 3, i % 3))
        assert batch["image"].shape == (6, 8, 8, 3) and batch["actions"].shape == (6, 3, 2)
        np.testing.assert_array_equal(batch["image"], want["observation.image"])
        np.testing.assert_array_equal(batch["actions"], want["action"])
        np.testing.assert_array_equal(batch["pad"], want["action_is_pad"])


@pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 devices (JAX started before jax_num_cpu_devices=2)")
def test_batches_split_over_the_mesh():
    mesh = make_mesh(1, jax.devices()[:2])
    data = L.to_device(L.load_arrays(_dataset(20)), mesh)
    assert data["state"].sharding.spec == jax.sharding.PartitionSpec(DATA_AXIS)  # 20 rows split 10 + 10
    assert L.to_device(L.load_arrays(_dataset(21)), mesh)["state"].sharding.is_fully_replicated  # 21 does not divide
    streamed = next(L.StreamingLoader(_dataset(), mesh, L.LoaderConfig(batch_size=4, num_workers=0)))
    sampled = next(L.InMemoryLoader(data, mesh, 4, jax.random.key(0)))
    for batch in (streamed, sampled):
        assert [s.data.shape for s in batch["image"].addressable_shards] == [(2, 8, 8, 3)] * 2
    with pytest.raises(ValueError, match="must divide by the 2 devices"):
        L.StreamingLoader(_dataset(), mesh, L.LoaderConfig(batch_size=3))


def test_spawned_workers_run_jax_transforms(mesh):
    """The default start method: a worker may run JAX (a forked one deadlocks)."""
    images = np.random.default_rng(1).integers(0, 255, (8, 4, 8, 3), dtype=np.uint8)
    ds = ArrayDataset({"observation.image": images})
    resize = transforms.ResizeImages(8, 8)
    stream = L.StreamingLoader(ds, mesh, L.LoaderConfig(batch_size=4, num_workers=1), transform=resize)
    batch = _numpy(next(stream))
    rows = stream.sampler.local_indices(0, 0)
    want = np.stack([resize({"observation.image": images[i]})["observation.image"] for i in rows])
    np.testing.assert_array_equal(batch["observation.image"], want)
