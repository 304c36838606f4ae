"""Plot the learning curves of training runs side by side, as one PNG.

    tools/bazelw run //vibe/scripts:plot -- checkpoints/cartpole_ppo/default checkpoints/cartpole_dqn/default
    tools/bazelw run //vibe/scripts:plot -- checkpoints/*/default --metric loss/total --out losses.png
    tools/bazelw run //vibe/scripts:plot -- --help

Reads each run directory's metrics.jsonl and draws one line per run (labelled
`cartpole_ppo/default`, ...) of `episode/return_mean` against env steps, with a
star at the final greedy `eval/return_mean`. The user sees one log line,

    12:00:00.123 [I] Wrote /home/me/vibe/learning_curves.png: cartpole_ppo/default (61 points, eval 500.0), ...

and finds learning_curves.png in the directory the command ran from. Paths are
relative to that directory. A directory without metrics.jsonl exits with
status 1 and names the path it looked for.
"""

import dataclasses
import logging
import os
import sys
from typing import Annotated

import tyro

from vibe.core.usage import bazel_prog
from vibe.logging import console
from vibe.logging.plot import Curve, plot_runs

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PlotArgs:
    """Plot the learning curves of training runs side by side."""

    # Run directories (<output-dir>/<config>/<exp-name>), each holding a metrics.jsonl.
    run_dirs: Annotated[tuple[str, ...], tyro.conf.Positional]
    out: str = "learning_curves.png"  # PNG to write (relative to where the command runs).
    metric: str = "episode/return_mean"  # Key of metrics.jsonl on the y axis, e.g. loss/total.
    x: str = "step"  # Key on the x axis: step (env steps), update or time (training seconds).

    def __post_init__(self) -> None:
        if not self.run_dirs:
            raise ValueError(
                "PlotArgs.run_dirs is empty; name one or more run directories, e.g. checkpoints/cartpole_ppo/default"
            )


def user_path(path: str) -> str:
    """A path relative to where the user ran the command (`bazel run` starts binaries in
    the runfiles tree and says where the user stands in BUILD_WORKING_DIRECTORY).

    The same rule as vibe.train.runner.user_path, kept here so plotting does not import JAX.
    """
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def _describe(curve: Curve) -> str:
    evaluation = f", eval {curve.eval_y[-1]:.1f}" if len(curve.eval_y) else ""
    return f"{curve.label} ({len(curve.x)} points{evaluation})"


def main(argv: list[str] | None = None) -> str:
    """Parses `argv`, writes the PNG and returns its path."""
    console.setup_logging()
    try:
        args = tyro.cli(PlotArgs, args=argv, description=__doc__, prog=bazel_prog())
    except ValueError as e:  # tyro reports most validation errors itself; not all
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    out = user_path(args.out)
    try:
        curves = plot_runs([user_path(d) for d in args.run_dirs], out, metric=args.metric, x=args.x)
    except (FileNotFoundError, ValueError) as e:
        logger.error("%s", e)
        raise SystemExit(1) from e
    logger.info("Wrote %s: %s", out, ", ".join(_describe(c) for c in curves))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
