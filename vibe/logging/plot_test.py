import logging
import math
import pathlib

import numpy as np
import pytest

from vibe.logging import plot
from vibe.logging.metrics import MetricsWriter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, rows):
    with MetricsWriter(str(run_dir / "metrics.jsonl")) as writer:
        for step, metrics in rows:
            writer.write(step, metrics)
    return str(run_dir)


# A run as the runner writes it: chunk rows (the first before any episode ended), then the eval row.
PPO_ROWS = [
    (512, {"update": 1, "time": 0.5, "loss/total": 1.0}),
    (1024, {"update": 2, "time": 1.0, "episode/return_mean": 20.0, "loss/total": 0.8}),
    (1536, {"update": 3, "time": 1.5, "episode/return_mean": float("nan"), "loss/total": 0.7}),
    (1024, {"eval/return_mean": 30.0, "eval/episodes": 4}),
    (2048, {"update": 4, "time": 2.0, "episode/return_mean": 95.5, "loss/total": 0.5}),
    (2048, {"eval/return_mean": 120.0, "eval/episodes": 4}),
]


def test_one_run_writes_a_png_of_the_logged_values(tmp_path):
    run_dir = write_run(tmp_path / "cartpole_ppo" / "default", PPO_ROWS)
    path = plot.plot_run(run_dir)
    assert path == str(tmp_path / "cartpole_ppo" / "default" / "learning_curve.png")
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000  # an 800×500 plot with text, not an empty canvas
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (800, 500)

    (curve,) = plot.plot_runs([run_dir], str(tmp_path / "again.png"))
    assert curve.label == "cartpole_ppo/default"
    np.testing.assert_array_equal(curve.x, [1024, 1536, 2048])
    np.testing.assert_array_equal(curve.y, [20.0, math.nan, 95.5])  # NaN (logged as null) stays a gap
    np.testing.assert_array_equal(curve.eval_x, [1024, 2048])
    np.testing.assert_array_equal(curve.eval_y, [30.0, 120.0])


def test_figure_draws_each_run_and_its_eval_marker(tmp_path):
    run_a = write_run(tmp_path / "cartpole_ppo" / "default", PPO_ROWS)
    run_b = write_run(tmp_path / "cartpole_dqn" / "default", [(100, {"episode/return_mean": 9.0, "time": 3.0})])
    curves = [plot.extract_curve(plot.load_rows(d), plot.run_label(d), "episode/return_mean") for d in (run_a, run_b)]
    fig = plot.make_figure(curves, "episode/return_mean")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["cartpole_ppo/default"].get_xdata(), [1024, 1536, 2048])
    np.testing.assert_array_equal(lines["cartpole_ppo/default"].get_ydata(), [20.0, math.nan, 95.5])
    np.testing.assert_array_equal(lines["cartpole_dqn/default"].get_ydata(), [9.0])
    stars = [line for line in ax.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [([1024, 2048], [30.0, 120.0])]
    assert stars[0].get_color() == lines["cartpole_ppo/default"].get_color()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("env steps", "episode/return_mean")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "cartpole_ppo/default",
        "cartpole_dqn/default",
        "greedy eval",
    ]


def test_other_x_axis_places_the_eval_at_the_curve_end(tmp_path):
    run_dir = write_run(tmp_path / "a" / "b", PPO_ROWS)
    curve = plot.extract_curve(plot.load_rows(run_dir), "a/b", "loss/total", x="time")
    np.testing.assert_array_equal(curve.x, [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(curve.y, [1.0, 0.8, 0.7, 0.5])
    # Evaluation rows have no "time": each sits at the time of the chunk row of its step.
    np.testing.assert_array_equal(curve.eval_x, [1.0, 2.0])


def test_missing_metrics_file_names_the_path(tmp_path):
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no metrics at .*empty_run/metrics\.jsonl: the run directory"):
        plot.plot_run(str(tmp_path / "empty_run"))
    with pytest.raises(FileNotFoundError, match=r"the path .*typo is not a training run"):
        plot.plot_runs([str(tmp_path / "typo")], str(tmp_path / "out.png"))
    assert not (tmp_path / "out.png").exists()


def test_unknown_metric_lists_the_available_ones(tmp_path, caplog):
    run_dir = write_run(tmp_path / "x" / "y", [(10, {"loss/q": 0.5})])
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match=r"'loss/qq'.*\['loss/q', 'step'\]"):
        plot.plot_runs([run_dir], str(tmp_path / "out.png"), metric="loss/qq")
    assert "has no loss/qq against step" in caplog.text
