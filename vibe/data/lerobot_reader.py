"""Reads a local LeRobot dataset as a vibe ``Dataset``, fast, and never from the network.

    ds = LeRobotReader("data/cartpole", action_horizon=10)
    ds[0]["action"].shape          # (10, *action_shape): a_t .. a_{t+9}
    ds[0]["action_is_pad"]         # (10,) bool: steps past the episode's end (they repeat its last action)

The dataset is opened by lerobot's own ``LeRobotDataset`` (so its checks of
the format, timestamps and ``delta_timestamps`` apply), with ``HF_HUB_OFFLINE=1``
and ``video_backend="pyav"``. Samples are the same as ``LeRobotDataset[i]``
(a test checks it) except images, which are uint8 ``(H, W, C)`` (as envs
produce them; lerobot gives float CHW in [0, 1]), and ``task`` (a string;
``task_index`` is kept and ``tasks`` maps it back).

Speed (lerobot #2895): ``LeRobotDataset[i]`` with an action horizon queries the
HF dataset once per key per item, at a cost that grows with the dataset. This
reader instead loads every non-visual column into numpy once at open (a few MB
for state/action sized data) and builds windows and pad masks by index
arithmetic; images are read through one cached ``select_columns`` view, a
whole batch at once when the loader asks for one (``__getitems__``).
vibe/bench/loader.py, 2,000 frames with 32² PNG images, H = 50, on a busy
2-core box: 52 ms an item for ``LeRobotDataset[i]`` against 1.1 ms here; a
torch DataLoader (batch 64, 2 workers) 27 samples/s over ``LeRobotDataset``
against 2,236 through vibe's ``StreamingLoader``.
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vibe.data.dataset import Feature

VIDEO_BACKEND = "pyav"  # torchcodec cannot load here without system FFmpeg (stack.md)


class DatasetError(ValueError):
    """A dataset path, key or horizon that cannot work; the message says what to pass instead."""


def lerobot_home() -> Path:
    """Where lerobot keeps hub datasets: ``$HF_LEROBOT_HOME``, else ``$HF_HOME/lerobot``."""
    if "HF_LEROBOT_HOME" in os.environ:
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    hf_home = os.environ.get("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"))
    return Path(hf_home).expanduser() / "lerobot"


def resolve_root(root: str | os.PathLike | None, repo_id: str | None = None) -> Path:
    """The local folder of a dataset, or a one-line ``DatasetError`` naming what to pass."""
    if root is None:
        if repo_id is None:
            raise DatasetError("no dataset given; pass root=PATH (the folder holding meta/info.json and data/)")
        path = lerobot_home() / repo_id
        if not path.exists():
            raise DatasetError(
                f"dataset {repo_id!r} is not on disk at {path} and vibe never downloads; "
                f"pass root=PATH to a local copy (e.g. one downloaded with huggingface-cli into {path})"
            )
    else:
        path = Path(root).expanduser().absolute()
        if not path.exists():
            hub = lerobot_home() / str(root)
            hint = (
                f" (as a hub id it is not at {hub} either)" if "/" in str(root) and not Path(root).is_absolute() else ""
            )
            raise DatasetError(f"dataset root {path} does not exist{hint}; pass root=PATH to a local LeRobot dataset")
    if not (path / "meta" / "info.json").is_file():
        raise DatasetError(
            f"{path} is not a LeRobot dataset (no meta/info.json); pass the folder that holds meta/ and data/"
        )
    return path


class LeRobotReader:
    """A local LeRobot v3 dataset as a ``Dataset`` of numpy dicts (see the module docstring).

    Args:
        root: the dataset folder (holds ``meta/info.json``); None to look ``repo_id`` up on disk.
        repo_id: LeRobot's repo id; default ``local/<folder name>``. Never used to download.
        action_horizon: H; when set, each key in ``action_keys`` gets H steps ``[t, t+H)`` and a
            ``<key>_is_pad`` mask (lerobot's ``delta_timestamps = {key: [0, 1/fps, ..., (H-1)/fps]}``).
        action_keys: features that get the horizon.
        keys: features to return (default all); bookkeeping columns (``index``, ...) included.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        repo_id: str | None = None,
        action_horizon: int | None = None,
        action_keys: Sequence[str] = ("action",),
        keys: Sequence[str] | None = None,
    ):
        self.root = resolve_root(root, repo_id)
        self.repo_id = repo_id or f"local/{self.root.name}"
        info = json.loads((self.root / "meta" / "info.json").read_text())
        stored: dict[str, dict[str, Any]] = info["features"]
        self.fps = int(info["fps"])
        for field, names in (("action_keys", action_keys), ("keys", keys or ())):
            for key in names:
                if key not in stored:
                    raise DatasetError(
                        f"feature {key!r} (in {field}) is not in {self.root}; it has {', '.join(stored)}; "
                        f"pass {field} from those"
                    )
        if action_horizon is not None and action_horizon < 1:
            raise DatasetError(f"action_horizon={action_horizon}: pass a horizon of at least 1, or None for none")
        self.keys = list(keys) if keys is not None else list(stored)
        self.action_keys = [k for k in action_keys if k in self.keys] if action_horizon else []
        self.action_horizon = action_horizon
        self._stored = stored

        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the checks above already keep lerobot local
        from lerobot.datasets import LeRobotDataset

        delta = {k: [i / self.fps for i in range(action_horizon)] for k in self.action_keys} if action_horizon else None
        self.lerobot = LeRobotDataset(self.repo_id, root=self.root, delta_timestamps=delta, video_backend=VIDEO_BACKEND)
        meta = self.lerobot.meta
        self.tasks: list[str] = [str(name) for name in meta.tasks.sort_values("task_index").index]
        episodes = meta.episodes
        self._ep_from = dict(zip(episodes["episode_index"], episodes["dataset_from_index"], strict=True))
        self._ep_to = dict(zip(episodes["episode_index"], episodes["dataset_to_index"], strict=True))
        self._video_from = {
            k: dict(zip(episodes["episode_index"], episodes[f"videos/{k}/from_timestamp"], strict=True))
            for k in meta.video_keys
            if k in self.keys
        }
        if action_horizon:
            shortest = min(episodes["length"])
            if action_horizon > shortest:
                ep = list(episodes["length"]).index(shortest)
                raise DatasetError(
                    f"action_horizon={action_horizon} is longer than episode {ep} ({shortest} frames) of {self.root}; "
                    f"pass action_horizon <= {shortest} or record longer episodes"
                )

        hf = self.lerobot.hf_dataset.with_format("numpy")
        self._visual = [k for k in self.keys if stored[k]["dtype"] in ("image", "video")]
        self._images = [k for k in self._visual if stored[k]["dtype"] == "image"]
        self._columns = {k: np.asarray(hf[k]) for k in self.keys if k not in self._visual}
        for k in ("index", "episode_index", "timestamp"):
            if k not in self._columns:
                self._columns[k] = np.asarray(hf[k])
        self._image_view = hf.select_columns(self._images) if self._images else None
        self._len = len(hf)
        abs_index = self._columns["index"]
        if not np.array_equal(abs_index, np.arange(abs_index[0], abs_index[0] + self._len)):
            raise DatasetError(f"{self.root}: frame 'index' column is not contiguous; rewrite the dataset")
        self._offset = int(abs_index[0])
        episode = self._columns["episode_index"]
        self._row_from = np.array([self._ep_from[e] for e in episode], np.int64) - self._offset
        self._row_to = np.array([self._ep_to[e] for e in episode], np.int64) - self._offset

    def __len__(self) -> int:
        return self._len

    @property
    def features(self) -> dict[str, Feature]:
        out = {}
        for k in self.keys:
            spec = self._stored[k]
            visual = spec["dtype"] in ("image", "video")
            shape = tuple(spec["shape"])
            shape = () if shape == (1,) and not visual else shape  # lerobot returns (1,) features as scalars
            dtype = np.uint8 if visual else np.dtype(spec["dtype"])
            if k in self.action_keys:
                assert self.action_horizon is not None
                out[k] = Feature((self.action_horizon, *shape), dtype)
                out[f"{k}_is_pad"] = Feature((self.action_horizon,), bool)
            else:
                out[k] = Feature(shape, dtype)
        return out

    def column(self, key: str) -> np.ndarray:
        """Every frame's value of a non-visual feature (or ``index``/``episode_index``/``timestamp``),
        ``[len, *shape]``, from the columns loaded at open (no read, no horizon window)."""
        if key not in self._columns:
            raise DatasetError(
                f"{self.root}: {key!r} is not a loaded non-visual column; pass one of {', '.join(self._columns)}"
            )
        return self._columns[key]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """Samples ``indices`` in one batched read (torch's DataLoader calls this for a whole batch)."""
        rows = np.asarray(indices, np.int64)
        if rows.size and (rows.min() < -self._len or rows.max() >= self._len):
            raise IndexError(f"index out of range for a dataset of {self._len} frames")
        rows = rows % self._len
        batch = self.get_batch(rows)
        return [{k: v[i] for k, v in batch.items()} for i in range(len(rows))]

    def get_batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Samples ``rows`` stacked: every field ``[len(rows), *feature.shape]``."""
        out: dict[str, np.ndarray] = {}
        for k in self.keys:
            if k in self._visual:
                continue
            column = self._columns[k]
            if k in self.action_keys:
                assert self.action_horizon is not None
                want = rows[:, None] + np.arange(self.action_horizon)  # [b, H] rows a_t .. a_{t+H-1}
                lo, hi = self._row_from[rows][:, None], self._row_to[rows][:, None]
                out[k] = column[np.clip(want, lo, hi - 1)]  # past the end: the episode's last action
                out[f"{k}_is_pad"] = (want < lo) | (want >= hi)
            else:
                out[k] = column[rows]
        if self._image_view is not None:
            images = self._image_view[rows.tolist()]
            for k in self._images:
                out[k] = np.asarray(images[k], np.uint8).reshape(len(rows), *self._stored[k]["shape"])
        for k in self._video_from:
            out[k] = np.stack([self._video_frame(k, int(r)) for r in rows])
        return out

    def _video_frame(self, key: str, row: int) -> np.ndarray:
        from lerobot.datasets.video_utils import decode_video_frames

        episode = int(self._columns["episode_index"][row])
        timestamp = self._video_from[key][episode] + float(self._columns["timestamp"][row])
        path = self.root / self.lerobot.meta.get_video_file_path(episode, key)
        frames = decode_video_frames(
            path, [timestamp], self.lerobot.tolerance_s, VIDEO_BACKEND, return_uint8=True
        )  # [1, C, H, W] uint8
        result: np.ndarray = frames[0].permute(1, 2, 0).numpy()
        return result
