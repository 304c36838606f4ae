import dataclasses
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.core.types import TimeStep
from vibe.data import record
from vibe.data.lerobot_reader import LeRobotReader
from vibe.data.lerobot_writer import read_vibe_metadata
from vibe.envs import gymnax_env, pixel_cartpole, spaces

# datasets/lerobot read HF_HOME when first imported (lazily, inside the calls below): keep caches hermetic.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="vibe-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"  # and never reach the network


@dataclasses.dataclass(frozen=True)
class Blink:
    """An 8×8 image env: the image's brightness is 10·t; terminates after 5 steps; Box(2) actions."""

    @property
    def default_params(self) -> Any:
        return None

    def _obs(self, t):
        return jnp.full((8, 8, 3), 10 * t, jnp.uint8)

    def reset(self, key, params):
        return jnp.zeros((), jnp.int32), TimeStep(self._obs(0), jnp.float32(0), jnp.bool_(False), jnp.bool_(False), {})

    def step(self, key, state, action, params):
        t = state + 1
        ts = TimeStep(self._obs(t), jnp.sum(action).astype(jnp.float32), t >= 5, jnp.bool_(False), {})
        return t, ts

    def observation_space(self, params):
        return spaces.Box(0, 255, (8, 8, 3), np.uint8)

    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (2,))


def test_cartpole_rollouts_become_a_dataset(tmp_path):
    env, params = gymnax_env.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=30)

    def policy(obs, key):  # push towards the pole's lean: deterministic, so actions can be checked
        return (obs[2] > 0).astype(jnp.int32)

    out = record.record_episodes(
        env,
        params,
        policy,
        episodes=3,
        out=tmp_path / "cp",
        fps=50,
        key=jax.random.key(0),
        batch=2,
        metadata={"policy": "lean"},
        progress=False,
    )
    reader = LeRobotReader(out)
    meta = read_vibe_metadata(out)
    assert meta["env"] == "CartPole-v1" and meta["policy"] == "lean" and meta["max_steps"] == 30
    assert meta["action_space"] == {"type": "discrete", "n": 2} and meta["observation_space"]["shape"] == [4]
    data = reader.get_batch(np.arange(len(reader)))
    assert reader.features["observation.state"].shape == (4,) and reader.features["action"].dtype == np.int64
    np.testing.assert_array_equal(data["action"], (data["observation.state"][:, 2] > 0).astype(np.int64))
    lengths = np.bincount(data["episode_index"])
    assert len(lengths) == 3 and lengths.max() <= 30
    ends = np.cumsum(lengths) - 1
    ended = data["next.done"] | data["next.truncated"]
    assert ended[ends].all() and ended.sum() == 3  # exactly one end per episode, at its last frame
    assert not (data["next.done"] & data["next.truncated"]).any()


def test_image_env_and_truncation_at_max_steps(tmp_path):
    def policy(obs, key):
        return jax.random.uniform(key, (2,), minval=-1, maxval=1)

    out = record.record_episodes(
        Blink(),
        None,
        policy,
        episodes=2,
        out=tmp_path / "blink",
        fps=10,
        key=jax.random.key(1),
        max_steps=3,
        progress=False,
    )
    reader = LeRobotReader(out)
    assert len(reader) == 6 and "observation.state" not in reader.features
    data = reader.get_batch(np.arange(6))
    np.testing.assert_array_equal(data["observation.image"][:3, 0, 0, 0], [0, 10, 20])
    np.testing.assert_array_equal(data["next.truncated"], [False, False, True] * 2)
    assert not data["next.done"].any()
    np.testing.assert_allclose(data["next.reward"], data["action"].sum(1), rtol=1e-6)

    full = record.record_episodes(
        Blink(),
        None,
        policy,
        episodes=1,
        out=tmp_path / "blink",
        fps=10,
        key=jax.random.key(1),
        max_steps=8,
        overwrite=True,
        video=True,
        progress=False,
    )
    reader = LeRobotReader(full)
    data = reader.get_batch(np.arange(len(reader)))
    assert len(reader) == 5 and data["next.done"].tolist() == [False] * 4 + [True]
    assert not data["next.truncated"].any()
    assert np.abs(data["observation.image"][:, 4, 4, 0].astype(int) - [0, 10, 20, 30, 40]).max() <= 3  # video


def test_pixel_cartpole_and_image_conversions(tmp_path):
    env, params = pixel_cartpole.make(16, 16)

    def policy(obs, key):
        return jax.random.randint(key, (), 0, 2)

    out = record.record_episodes(
        env,
        params,
        policy,
        episodes=2,
        out=tmp_path / "pix",
        fps=50,
        key=jax.random.key(2),
        max_steps=4,
        progress=False,
    )
    reader = LeRobotReader(out)
    assert reader.features["observation.image"].shape == (16, 16, 3) and len(reader) == 8
    assert read_vibe_metadata(out)["observation_space"]["shape"] == [16, 16, 3]
    first = np.asarray(env.reset(jax.random.split(jax.random.split(jax.random.key(2), 2)[0])[0], params)[1].obs)
    np.testing.assert_array_equal(reader[0]["observation.image"], first)

    np.testing.assert_array_equal(record._to_uint8(np.array([True, False])), [255, 0])
    np.testing.assert_array_equal(record._to_uint8(np.array([-1.0, 0.0, 1.0], np.float32)), [0, 128, 255])
