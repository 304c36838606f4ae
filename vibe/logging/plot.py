"""Learning curves from run directories' `metrics.jsonl`, saved as PNG.

    plot_run(run_dir)                                  # <run_dir>/learning_curve.png
    plot_runs([dir_a, dir_b], "curves.png")            # one line per run, side by side

Each run is a line of `metric` (default `episode/return_mean`, the mean return
of the episodes that ended in a chunk) against env steps; the greedy
evaluations (`eval/return_mean`, logged during training and at the end) are a
dashed line of star markers in the same colour at the steps they were taken.
Rendering uses matplotlib's Agg canvas directly: no display,
no pyplot global state.
"""

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vibe.logging.metrics import read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

EVAL_METRIC = "eval/return_mean"
CURVE_FILE = "learning_curve.png"


@dataclasses.dataclass(frozen=True)
class Curve:
    """One run's points: `x` and `y` [n] from the rows that have both, and the greedy evaluation."""

    label: str  # the run directory's last two parts, e.g. "cartpole_ppo/default"
    x: np.ndarray  # [n] float64, increasing as logged
    y: np.ndarray  # [n] float64; NaN where the logged value was NaN/inf (null in the JSON)
    eval_x: np.ndarray  # [e] float64: where each greedy evaluation was taken
    eval_y: np.ndarray  # [e] float64: its eval/return_mean


def run_label(run_dir: str) -> str:
    """`checkpoints/cartpole_ppo/default/` → `cartpole_ppo/default`."""
    parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
    return "/".join(parts[-2:])


def load_rows(run_dir: str) -> list[dict[str, Any]]:
    """The rows of `<run_dir>/metrics.jsonl`; a clear error when there are none to read."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        what = "run directory" if os.path.isdir(run_dir) else "path"
        raise FileNotFoundError(
            f"no metrics at {path}: the {what} {run_dir} is not a training run "
            "(expected <output-dir>/<config>/<exp-name>, e.g. checkpoints/cartpole_ppo/default)"
        )
    return read_metrics(path)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def extract_curve(rows: Sequence[dict[str, Any]], label: str, metric: str, x: str = "step") -> Curve:
    """The points of `metric` against `x`; rows lacking either (e.g. the eval row) are skipped."""
    points = [(float(row[x]), _number(row[metric])) for row in rows if metric in row and x in row]
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    # Evaluation rows carry `step` but not wall-clock keys: place each at the x of the chunk row of its step.
    x_at_step = {row["step"]: float(row[x]) for row in rows if x in row and "step" in row}
    evals = [row for row in rows if row.get(EVAL_METRIC) is not None] if metric != EVAL_METRIC else []
    last_x = xs[-1] if len(xs) else math.nan
    eval_x = np.array([x_at_step.get(row.get("step"), last_x) for row in evals], dtype=np.float64)
    eval_y = np.array([float(row[EVAL_METRIC]) for row in evals], dtype=np.float64)
    return Curve(label, xs, ys, eval_x[np.isfinite(eval_x)], eval_y[np.isfinite(eval_x)])


def make_figure(curves: Sequence[Curve], metric: str, x: str = "step") -> "Figure":
    """One axes, one line (and eval marker) per curve, in matplotlib's default colour cycle."""
    # Imported here, not at the top: commands that never draw (--help, a refused start, a server) skip it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for curve in curves:
        (line,) = ax.plot(curve.x, curve.y, label=curve.label, linewidth=1.5)
        if len(curve.eval_x):
            color = line.get_color()
            ax.plot(curve.eval_x, curve.eval_y, marker="*", markersize=10, linestyle="--", linewidth=1, color=color)
            ex, ey = curve.eval_x[-1], curve.eval_y[-1]
            ax.annotate(f"{ey:.1f}", (ex, ey), textcoords="offset points", xytext=(6, 4), color=color)
    if any(len(curve.eval_x) for curve in curves):
        # A proxy legend entry explains the stars once.
        ax.plot([], [], marker="*", markersize=10, linestyle="--", color="gray", label="greedy eval")
    if x == "step":
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 500k, 1M
    ax.set_xlabel("env steps" if x == "step" else x)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {'env steps' if x == 'step' else x}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_runs(
    run_dirs: Sequence[str], out_path: str, metric: str = "episode/return_mean", x: str = "step"
) -> list[Curve]:
    """Draws each run's `metric` against `x` into the PNG `out_path`; returns the curves drawn.

    Raises FileNotFoundError for a run directory without metrics.jsonl, and
    ValueError when no run has any point of `metric` (listing what they have).
    """
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run directory")
    curves: list[Curve] = []
    available: set[str] = set()
    for run_dir in run_dirs:
        rows = load_rows(run_dir)
        curve = extract_curve(rows, run_label(run_dir), metric, x)
        if len(curve.x) == 0 and len(curve.eval_x) == 0:
            logger.warning("%s has no %s against %s; its line is empty", run_dir, metric, x)
        available.update(key for row in rows for key, value in row.items() if isinstance(value, int | float))
        curves.append(curve)
    if all(len(c.x) == 0 and len(c.eval_x) == 0 for c in curves):
        raise ValueError(
            f"no run has a {metric!r} against {x!r} to plot; numeric metrics they have: {sorted(available)}"
        )
    fig = make_figure(curves, metric, x)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, format="png")
    return curves


def plot_run(run_dir: str, metric: str = "episode/return_mean") -> str:
    """Writes `<run_dir>/learning_curve.png` for one run; returns its path."""
    out_path = os.path.join(run_dir, CURVE_FILE)
    plot_runs([run_dir], out_path, metric=metric)
    return out_path
