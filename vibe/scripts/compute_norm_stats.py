"""Computes NormStats (mean, std, q01, q99) of a LeRobot dataset's state and actions.

    tools/bazelw run //vibe/scripts:compute_norm_stats -- --dataset data/cartpole
    tools/bazelw run //vibe/scripts:compute_norm_stats -- --dataset data/x --action-horizon 10 --out assets/x

One streaming pass (vibe.data.normalize.RunningStats) with a progress bar,
then `wrote data/cartpole/norm_stats.json` (openpi's layout, one entry per
key). By default the file goes into the dataset folder, beside meta/ and data/.
Mean and std are exact; quantiles are exact up to 100k frames and within
2·range/32768 beyond (1M frames × 32 dims take ~2 s here).

With --action-horizon H, action stats are over H-step chunks (each frame
counted about H times, as openpi's compute_norm_stats does); the padded steps
past an episode's end repeat its last action and are counted too.
"""

import dataclasses
import json
import os
import sys

import numpy as np
import tyro

from vibe.core.usage import bazel_prog
from vibe.data import normalize
from vibe.data.lerobot_reader import DatasetError, LeRobotReader, resolve_root

DEFAULT_KEYS = ("observation.state", "action")


@dataclasses.dataclass(frozen=True)
class Args:
    dataset: str  # LeRobot dataset folder (holds meta/info.json), relative to where the command runs
    out: str | None = None  # folder for norm_stats.json; default the dataset folder
    keys: tuple[str, ...] = ()  # features to describe; default those of observation.state and action it has
    action_horizon: int | None = None  # compute action stats over H-step chunks (openpi-style)
    batch_size: int = 4096  # frames read per step
    max_frames: int | None = None  # only the first N frames (quick look at a huge dataset)
    progress: bool = True  # show a progress bar


def user_path(path: str) -> str:
    """A path as the user meant it: relative to where they ran `bazel run` (BUILD_WORKING_DIRECTORY).

    The same rule as vibe/train/runner.py's `user_path`, kept here so this script does not pull in the trainer.
    """
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def compute(args: Args) -> dict[str, normalize.NormStats]:
    """The stats of ``args.keys`` (or the default keys the dataset has) over the dataset."""
    root = resolve_root(user_path(args.dataset))
    stored = json.loads((root / "meta" / "info.json").read_text())["features"]
    keys = list(args.keys) or [k for k in DEFAULT_KEYS if k in stored]
    if not keys:
        raise DatasetError(f"{root} has none of {', '.join(DEFAULT_KEYS)}; pass --keys with the features to describe")
    reader = LeRobotReader(root, keys=keys, action_horizon=args.action_horizon, action_keys=("action",))
    for key in keys:
        if not np.issubdtype(reader.features[key].dtype, np.number):
            raise DatasetError(f"feature {key!r} is {reader.features[key].dtype}, not numeric; leave it out of --keys")
    total = len(reader) if args.max_frames is None else min(args.max_frames, len(reader))
    stats = {k: normalize.RunningStats() for k in keys}

    from tqdm import tqdm

    with tqdm(total=total, desc="norm stats", unit="frame", disable=not args.progress) as bar:
        for start in range(0, total, args.batch_size):
            rows = np.arange(start, min(start + args.batch_size, total))
            batch = reader.get_batch(rows)
            for key in keys:
                values = batch[key].astype(np.float64)
                # A scalar feature ([b], e.g. a discrete action) is one dimension: [b, 1].
                stats[key].update(values.reshape(len(rows), -1) if values.ndim == 1 else values)
            bar.update(len(rows))
    return {key: s.get() for key, s in stats.items()}


def main(args: Args) -> None:
    try:
        stats = compute(args)
    except DatasetError as error:
        message = str(error).replace("root=PATH", "--dataset PATH")  # the reader's advice, in this CLI's terms
        print(f"compute_norm_stats: error: {message}", file=sys.stderr)
        sys.exit(2)
    out = user_path(args.out) if args.out else user_path(args.dataset)
    path = normalize.save(stats, out)
    for key, s in stats.items():
        print(f"{key}: mean {np.round(s.mean, 4).tolist()} std {np.round(s.std, 4).tolist()}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
