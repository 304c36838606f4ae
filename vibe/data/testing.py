"""Small synthetic LeRobot datasets written through vibe's writer (tests and benchmarks; never a hub).

Values are easy to check: in episode ``e`` at step ``i`` the action is
``[e, i, 0, ...]`` and the state is ``[e + i / 100, ...]``; images are smooth
gradients (so lossy video keeps them close) shifted by ``e`` and ``i``.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vibe.data.lerobot_writer import DatasetSpec, LeRobotWriter


def episode_arrays(
    episode: int, length: int, *, state_dim: int | None, image_shape: tuple[int, int, int] | None, action_dim: int
) -> dict[str, np.ndarray]:
    """The arrays of one synthetic episode, as ``LeRobotWriter.add_episode`` takes them."""
    steps = np.arange(length)
    actions = np.zeros((length, action_dim), np.float32)
    actions[:, 0] = episode
    if action_dim > 1:
        actions[:, 1] = steps
    out: dict[str, np.ndarray] = {
        "actions": actions,
        "rewards": (steps % 3).astype(np.float32),
        "terminated": steps == length - 1,
        "truncated": np.zeros(length, bool),
    }
    if state_dim is not None:
        out["states"] = (episode + steps[:, None] / 100 + np.arange(state_dim) / 10).astype(np.float32)
    if image_shape is not None:
        h, w, c = image_shape
        grid = np.add.outer(np.arange(h) * 8, np.arange(w) * 8)[None, :, :, None] + np.arange(c) * 20
        out["images"] = ((grid + 4 * steps[:, None, None, None] + 30 * episode) % 200).astype(np.uint8)
    return out


def write_dataset(
    out: str | os.PathLike,
    *,
    lengths: Sequence[int] = (12, 9, 15),
    state_dim: int | None = 4,
    image_shape: tuple[int, int, int] | None = (8, 8, 3),
    action_dim: int = 2,
    video: bool = False,
    fps: int = 10,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Writes one episode per entry of ``lengths``; returns what was written, per episode."""
    spec = DatasetSpec(
        fps=fps,
        action_shape=(action_dim,),
        state_shape=None if state_dim is None else (state_dim,),
        image_shape=image_shape,
        video=video,
        robot_type="synthetic",
    )
    written = []
    with LeRobotWriter(out, spec, metadata=metadata, overwrite=overwrite) as writer:
        for e, length in enumerate(lengths):
            arrays = episode_arrays(e, length, state_dim=state_dim, image_shape=image_shape, action_dim=action_dim)
            writer.add_episode(
                actions=arrays["actions"],
                rewards=arrays["rewards"],
                terminated=arrays["terminated"],
                truncated=arrays["truncated"],
                states=arrays.get("states"),
                images=arrays.get("images"),
            )
            written.append(arrays)
    return written
