"""Exact resume of an offline run: BC N updates straight equals N/2, process exit, ``--resume``, N/2 more.

The batches are drawn inside jit from the dataset with the key in the state, so nothing about the data
stream needs saving: the final state (params, the dataset's normalisation in them, Adam's moments, the key,
the counter) and every logged metric are bitwise equal. The halves run in their own processes; the
reference runs in this one.
"""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from vibe.checkpoint import manager as checkpoints
from vibe.config import presets
from vibe.logging.metrics import read_metrics
from vibe.scripts import record_dataset, train, training

UPDATES = 8
NOT_REPRODUCIBLE = {"time", "sps"}

TRAIN = """
import sys
from vibe.scripts import train
train.main(sys.argv[1:])
"""


def flags(dataset: pathlib.Path, out: pathlib.Path, exp_name: str) -> list[str]:
    return [
        "cartpole_bc",
        "--data.dataset", str(dataset),
        "--data.normalize",
        "--data.action-horizon", "2",
        "--data.batch-size", "16",
        "--algo.num-updates", str(UPDATES),
        "--algo.encoder.hidden-sizes", "32",
        "--updates-per-chunk", "2",
        "--eval-every", "2",
        "--eval-episodes", "2",
        "--checkpoint.save-interval", "4",
        "--wandb-mode", "disabled",
        "--output-dir", str(out),
        "--exp-name", exp_name,
    ]  # fmt: skip


def run_process(argv: list[str], log: pathlib.Path) -> None:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    with open(log, "w") as f:
        code = subprocess.run(
            [sys.executable, "-c", TRAIN, *argv], stdout=subprocess.DEVNULL, stderr=f, env=env
        ).returncode
    assert code == 0, log.read_text()[-3000:]


def test_bc_resume_is_exact(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dataset = record_dataset.record(
        record_dataset.Args(out=str(tmp_path / "data"), policy="random", env="CartPole-v1", episodes=4, progress=False)
    )
    out = tmp_path / "runs"
    run_process([*flags(dataset, out, "split"), "--stop-after-updates", str(UPDATES // 2)], tmp_path / "first.log")
    run_process([*flags(dataset, out, "split"), "--resume"], tmp_path / "second.log")
    train.main(flags(dataset, out, "straight"))

    algorithm = training.make_algorithm(presets.cli(flags(dataset, out, "straight")))
    abstract = jax.eval_shape(algorithm.init, jax.random.PRNGKey(0))
    run_dirs = {name: out / "cartpole_bc" / name for name in ("straight", "split")}
    states = {name: checkpoints.restore(str(run_dir), abstract) for name, run_dir in run_dirs.items()}
    assert states["straight"][0] == states["split"][0] == UPDATES
    jax.tree.map(np.testing.assert_array_equal, states["straight"][1], states["split"][1])
    assert int(states["split"][1].step) == UPDATES

    def rows(run_dir: pathlib.Path) -> list[dict]:
        return [
            {k: v for k, v in row.items() if k not in NOT_REPRODUCIBLE}
            for row in read_metrics(str(run_dir / "metrics.jsonl"))
        ]

    straight, split = rows(run_dirs["straight"]), rows(run_dirs["split"])
    assert straight == split  # training rows and evaluation rows (the resumed run evaluates the split step again)
    assert [row["step"] for row in straight if "update" in row] == [16 * u for u in range(2, UPDATES + 1, 2)]
    assert [row["step"] for row in straight if "update" not in row] == [16 * u for u in range(2, UPDATES + 1, 2)]
