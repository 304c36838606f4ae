"""Writes LeRobot v3 datasets through lerobot's own writer, plus vibe's metadata.

    spec = DatasetSpec(fps=50, action_shape=(), action_dtype="int64", state_shape=(4,))
    with LeRobotWriter("data/cartpole", spec, metadata={"env": "CartPole-v1"}) as writer:
        writer.add_episode(states=s, actions=a, rewards=r, terminated=d, truncated=t)
    read_vibe_metadata("data/cartpole")   # {"env": "CartPole-v1"}

Frame t of an episode holds observation o_t, action a_t, and what the step
with a_t returned: ``next.reward`` r_t, ``next.done`` (terminated: the MDP
reached a terminal state, no bootstrap) and ``next.truncated`` (cut by a time
limit; bootstrap). LeRobot keeps no observation after the last frame.

Everything is written into a staging folder beside ``out`` (``.NAME.partial``)
and moved into place only after ``finalize``: a failure (or a kill) mid-write
never leaves a half dataset at ``out``, and the next attempt deletes the stale
staging folder. So two writers must not target the same ``out`` at once.
``overwrite=True`` replaces an existing ``out`` only once the new one is
complete.
"""

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

STATE_KEY = "observation.state"
IMAGE_KEY = "observation.image"
ACTION_KEY = "action"
REWARD_KEY = "next.reward"
DONE_KEY = "next.done"
TRUNCATED_KEY = "next.truncated"
VIBE_METADATA = "meta/vibe.json"  # relative to the dataset root
VIDEO_BACKEND = "pyav"  # torchcodec cannot load here without system FFmpeg (stack.md)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What each frame of the dataset holds.

    Attributes:
        fps: frames per second (LeRobot timestamps are frame_index / fps).
        action_shape: shape of one action; ``()`` (a discrete action) is stored as shape ``(1,)``.
        action_dtype: numpy dtype name of actions ("float32", or "int64" for discrete actions).
        state_shape: shape of a flat observation (``observation.state``), or None for none.
        image_shape: ``(H, W, C)`` of a uint8 image observation (``observation.image``), or None.
        video: store images as MP4 video (PyAV), not as PNG frames in the parquet files.
        video_codec: FFmpeg encoder for ``video``. h264 (libx264) by default: lerobot's default, libsvtav1,
            kills the process (SIGFPE) on small frames such as 8×8, and AV1 decodes ~5× slower (lerobot #1623).
        video_crf: constant rate factor of the encoder (lower is closer to lossless; 0 is lossless for x264).
        robot_type: LeRobot's free-form robot type (vibe stores the env id).
    """

    fps: int
    action_shape: tuple[int, ...]
    action_dtype: str = "float32"
    state_shape: tuple[int, ...] | None = None
    image_shape: tuple[int, int, int] | None = None
    video: bool = False
    video_codec: str = "h264"
    video_crf: int = 18
    robot_type: str | None = None

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps={self.fps}: pass a positive frame rate")
        if self.state_shape is None and self.image_shape is None:
            raise ValueError("DatasetSpec needs state_shape or image_shape (or both); the dataset would have no obs")
        if self.image_shape is not None and len(self.image_shape) != 3:
            raise ValueError(f"image_shape={self.image_shape}: pass (height, width, channels)")
        if self.video and self.image_shape is None:
            raise ValueError("video=True needs image_shape: only image observations are stored as video")

    def features(self) -> dict[str, dict[str, Any]]:
        """LeRobot's feature dict for ``LeRobotDataset.create``."""
        features: dict[str, dict[str, Any]] = {}
        if self.state_shape is not None:
            features[STATE_KEY] = {"dtype": "float32", "shape": tuple(self.state_shape), "names": None}
        if self.image_shape is not None:
            features[IMAGE_KEY] = {
                "dtype": "video" if self.video else "image",
                "shape": tuple(self.image_shape),
                "names": ["height", "width", "channels"],
            }
        features[ACTION_KEY] = {"dtype": self.action_dtype, "shape": tuple(self.action_shape) or (1,), "names": None}
        features[REWARD_KEY] = {"dtype": "float32", "shape": (1,), "names": None}
        features[DONE_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
        features[TRUNCATED_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
        return features


class LeRobotWriter:
    """Writes episodes to a new LeRobot dataset at ``out`` (see the module docstring).

    Use as a context manager, or call ``close()`` (success) / ``abort()`` (failure) yourself.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        spec: DatasetSpec,
        *,
        metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
        repo_id: str | None = None,
        task: str = "rollout",
    ):
        self.out = Path(out).absolute()
        if self.out.exists() and not overwrite:
            raise FileExistsError(
                f"dataset dir {self.out} already exists; pass overwrite=True (--overwrite) to replace it, "
                "or choose another output dir"
            )
        if metadata is not None:
            json.dumps(metadata)  # fail now, not after recording, if it is not JSON-able
        self.spec, self.metadata, self.task = spec, metadata, task
        self.repo_id = repo_id or f"local/{self.out.name}"
        self._staging = self.out.parent / f".{self.out.name}.partial"
        shutil.rmtree(self._staging, ignore_errors=True)  # left by a killed attempt
        self.out.parent.mkdir(parents=True, exist_ok=True)

        from datasets.utils.logging import disable_progress_bar
        from lerobot.configs.video import RGBEncoderConfig
        from lerobot.datasets import LeRobotDataset

        disable_progress_bar()  # one "Map:" bar per saved episode otherwise; callers show their own
        self._ds = LeRobotDataset.create(
            repo_id=self.repo_id,
            fps=spec.fps,
            features=spec.features(),
            root=self._staging,
            robot_type=spec.robot_type,
            use_videos=spec.video,
            video_backend=VIDEO_BACKEND,
            rgb_encoder=RGBEncoderConfig(vcodec=spec.video_codec, crf=spec.video_crf) if spec.video else None,
        )
        self.episodes = 0
        self._closed = False

    def add_episode(
        self,
        *,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        states: np.ndarray | None = None,
        images: np.ndarray | None = None,
        task: str | None = None,
    ) -> None:
        """Appends one episode of ``t`` frames.

        Args:
            actions: ``[t, *action_shape]``.
            rewards: ``[t]`` float rewards r_t.
            terminated: ``[t]`` bool, true where the step ended the episode in a terminal state.
            truncated: ``[t]`` bool, true where a time limit cut the episode.
            states: ``[t, *state_shape]`` float observations, when the spec has a state.
            images: ``[t, H, W, C]`` uint8 observations, when the spec has an image.
            task: LeRobot task text of this episode (default: the writer's ``task``).
        """
        spec = self.spec
        t = len(actions)
        if t == 0:
            raise ValueError("add_episode got an empty episode (0 frames); record at least one step")
        given = {"states": states, "images": images}
        for name, value, wanted in (("states", states, spec.state_shape), ("images", images, spec.image_shape)):
            if (value is None) != (wanted is None):
                need = "needs" if wanted is not None else "has no"
                raise ValueError(f"the dataset spec {need} {name} (shape {wanted}); pass {name}= to match the spec")
        for name, value in (("rewards", rewards), ("terminated", terminated), ("truncated", truncated), *given.items()):
            if value is not None and len(value) != t:
                raise ValueError(f"{name} has {len(value)} frames but actions has {t}; pass one per step")
        action_shape = tuple(spec.action_shape) or (1,)
        actions = np.asarray(actions, dtype=spec.action_dtype).reshape(t, *action_shape)
        rewards = np.asarray(rewards, np.float32).reshape(t, 1)
        terminated = np.asarray(terminated, bool).reshape(t, 1)
        truncated = np.asarray(truncated, bool).reshape(t, 1)
        for i in range(t):
            frame: dict[str, Any] = {
                ACTION_KEY: actions[i],
                REWARD_KEY: rewards[i],
                DONE_KEY: terminated[i],
                TRUNCATED_KEY: truncated[i],
                "task": task or self.task,
            }
            if states is not None:
                frame[STATE_KEY] = np.asarray(states[i], np.float32)
            if images is not None:
                frame[IMAGE_KEY] = np.asarray(images[i], np.uint8)
            self._ds.add_frame(frame)
        self._ds.save_episode()
        self.episodes += 1

    def close(self) -> Path:
        """Finalizes the parquet files, writes vibe's metadata, and moves the dataset to ``out``."""
        if self._closed:
            return self.out
        self._ds.finalize()
        images = self._staging / "images"  # lerobot's temporary PNG folder, empty once episodes are saved
        if images.is_dir() and not any(images.rglob("*.png")):
            shutil.rmtree(images)
        if self.metadata is not None:
            (self._staging / VIBE_METADATA).write_text(json.dumps(self.metadata, indent=2))
        old = self.out.parent / f".{self.out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.out.exists():
            self.out.rename(old)
        self._staging.rename(self.out)
        shutil.rmtree(old, ignore_errors=True)
        self._closed = True
        return self.out

    def abort(self) -> None:
        """Drops everything written so far; ``out`` is left as it was."""
        self._closed = True
        with contextlib.suppress(Exception):  # best effort: the folder is deleted either way
            self._ds.finalize()  # stops lerobot's writer threads before their folder goes
        shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_vibe_metadata(root: str | os.PathLike) -> dict[str, Any] | None:
    """The ``metadata`` dict the writer stored in ``root/meta/vibe.json``; None for datasets vibe did not write."""
    path = Path(root) / VIBE_METADATA
    if not path.exists():
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return result
