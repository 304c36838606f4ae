import json
import os
import tempfile

import numpy as np
import pytest

from vibe.data import lerobot_reader, lerobot_writer, testing
from vibe.data.lerobot_reader import DatasetError, LeRobotReader

# datasets/lerobot read HF_HOME when first imported (lazily, inside the calls below): keep caches hermetic.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vibe-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"  # and never reach the network
os.environ.pop("HF_LEROBOT_HOME", None)

LENGTHS = (12, 9, 15)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "frames"
    written = testing.write_dataset(root, lengths=LENGTHS, metadata={"env": "Synthetic-v0", "obs": [4]})
    return root, written


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "video"
    written = testing.write_dataset(root, lengths=(6, 5), state_dim=None, image_shape=(8, 8, 3), video=True)
    return root, written


def test_lerobot_reads_back_what_the_writer_wrote(frames):
    from lerobot.datasets import LeRobotDataset

    root, written = frames
    ds = LeRobotDataset("local/frames", root=root, video_backend="pyav")
    assert len(ds) == sum(LENGTHS) and ds.num_episodes == 3 and ds.fps == 10
    assert set(ds.features) >= {"observation.state", "observation.image", "action", "next.reward", "next.done"}
    assert ds.features["next.truncated"]["dtype"] == "bool"
    starts = np.cumsum((0, *LENGTHS))
    assert list(ds.meta.episodes["dataset_from_index"]) == starts[:-1].tolist()
    assert list(ds.meta.episodes["dataset_to_index"]) == starts[1:].tolist()
    for e, arrays in enumerate(written):
        for i in (0, LENGTHS[e] - 1):
            item = ds[int(starts[e]) + i]
            assert item["episode_index"].item() == e and item["frame_index"].item() == i
            np.testing.assert_array_equal(item["action"].numpy(), arrays["actions"][i])
            np.testing.assert_array_equal(item["observation.state"].numpy(), arrays["states"][i])
            assert item["next.reward"].item() == arrays["rewards"][i]
            assert item["next.done"].item() == (i == LENGTHS[e] - 1)
            assert not item["next.truncated"].item() and item["task"] == "rollout"
            image = np.round(item["observation.image"].numpy().transpose(1, 2, 0) * 255)
            np.testing.assert_array_equal(image, arrays["images"][i])
    assert lerobot_writer.read_vibe_metadata(root) == {"env": "Synthetic-v0", "obs": [4]}
    assert not (root.parent / ".frames.partial").exists()


def test_reader_matches_lerobot_with_a_horizon(frames):
    root, _ = frames
    reader = LeRobotReader(root, action_horizon=4)
    assert len(reader) == sum(LENGTHS)
    features = reader.features
    assert features["action"].shape == (4, 2) and features["action_is_pad"].shape == (4,)
    assert features["observation.image"].shape == (8, 8, 3) and features["observation.image"].dtype == np.uint8
    assert features["next.reward"].shape == ()
    for i in range(len(reader)):
        ours, theirs = reader[i], reader.lerobot[i]
        assert set(ours) == set(theirs) - {"task"}
        for key, value in ours.items():
            assert value.shape == features[key].shape and value.dtype == features[key].dtype, key
            expected = theirs[key].numpy()
            if key == "observation.image":
                expected = np.round(expected.transpose(1, 2, 0) * 255)
            np.testing.assert_array_equal(value, expected, err_msg=f"{key} at {i}")
    # The last frame of episode 0: one real step, three padded ones repeating the last action.
    last = reader[LENGTHS[0] - 1]
    np.testing.assert_array_equal(last["action_is_pad"], [False, True, True, True])
    np.testing.assert_array_equal(last["action"], np.tile([0.0, LENGTHS[0] - 1], (4, 1)))
    assert reader.tasks == ["rollout"]


def test_batched_read_equals_single_reads(frames):
    root, _ = frames
    reader = LeRobotReader(root, action_horizon=3, keys=["observation.image", "action"])
    batch = reader.__getitems__([5, 0, 35, 11])
    for row, index in zip(batch, (5, 0, 35, 11), strict=True):
        assert set(row) == {"observation.image", "action", "action_is_pad"}
        for key in row:
            np.testing.assert_array_equal(row[key], reader[index][key])


def test_video_frames_decode_with_pyav(video):
    root, written = video
    reader = LeRobotReader(root, action_horizon=2)
    assert reader.lerobot.meta.video_keys == ["observation.image"]
    for i in range(len(reader)):
        image = reader[i]["observation.image"]
        expected = np.round(reader.lerobot[i]["observation.image"].numpy().transpose(1, 2, 0) * 255)
        np.testing.assert_array_equal(image, expected)
    original = written[1]["images"][3]
    assert np.abs(reader[6 + 3]["observation.image"].astype(int) - original).max() <= 8  # lossy h264, crf 18


def test_not_a_dataset_and_hub_ids_not_on_disk(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"is not a LeRobot dataset \(no meta/info.json\)"):
        LeRobotReader(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist") as error:
        LeRobotReader(tmp_path / "missing")
    with pytest.raises(DatasetError, match="vibe never downloads; pass root=PATH") as error:
        LeRobotReader(repo_id="lerobot/pusht")
    assert "\n" not in str(error.value)
    with pytest.raises(DatasetError, match="as a hub id it is not at"):
        LeRobotReader("lerobot/pusht")


def test_missing_key_and_long_horizon(frames):
    root, _ = frames
    with pytest.raises(DatasetError, match=r"feature 'actions' \(in action_keys\) is not in .* pass action_keys"):
        LeRobotReader(root, action_horizon=2, action_keys=["actions"])
    with pytest.raises(DatasetError, match=r"feature 'observation.images.top' \(in keys\)"):
        LeRobotReader(root, keys=["observation.images.top"])
    with pytest.raises(DatasetError, match=r"action_horizon=10 is longer than episode 1 \(9 frames\).*<= 9") as error:
        LeRobotReader(root, action_horizon=10)
    assert "\n" not in str(error.value)


def test_writer_refuses_existing_dir_and_overwrites_on_request(tmp_path):
    root = tmp_path / "ds"
    testing.write_dataset(root, lengths=(3,), image_shape=None)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        testing.write_dataset(root, lengths=(4,), image_shape=None)
    testing.write_dataset(root, lengths=(4, 2), image_shape=None, overwrite=True)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_frames"] == 6 and info["total_episodes"] == 2
    assert lerobot_writer.read_vibe_metadata(root) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_failed_write_leaves_nothing_in_the_way(tmp_path):
    root = tmp_path / "ds"
    spec = lerobot_writer.DatasetSpec(fps=10, action_shape=(2,), state_shape=(4,))
    arrays = testing.episode_arrays(0, 5, state_dim=4, image_shape=None, action_dim=2)
    with pytest.raises(ValueError, match="pass one per step"), lerobot_writer.LeRobotWriter(root, spec) as writer:
        writer.add_episode(**arrays)
        writer.add_episode(**{**arrays, "rewards": arrays["rewards"][:3]})
    assert list(tmp_path.iterdir()) == []
    testing.write_dataset(root, lengths=(5,), image_shape=None)
    assert len(LeRobotReader(root)) == 5


def test_lerobot_home_follows_hf_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert lerobot_reader.lerobot_home() == tmp_path / "lerobot"
