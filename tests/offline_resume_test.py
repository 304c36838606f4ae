"""Exact resume of an offline run on both loader paths: BC N updates straight equals N/2, SIGKILL,
``--resume``, N/2 more.

In memory, the batches are drawn inside jit with the key in the state. Streaming, a DataLoader worker
reads epochs of a seeded permutation and every checkpoint records the loader's position; the dataset
(about 80 frames, 5 batches an epoch) makes both runs cross an epoch boundary after the resume. Either
way the final state (params, the dataset's normalisation in them, Adam's moments, the key, the counter)
and every logged metric are bitwise equal. The first half is killed in its own process right after its
checkpoint at N/2 is committed; the resumed half runs in another; the reference runs in this one.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

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


def flags(dataset: pathlib.Path, out: pathlib.Path, exp_name: str, loader: str) -> list[str]:
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
        "--data.loader", loader,
        "--data.num-workers", "1",
    ]  # fmt: skip


def run_process(argv: list[str], log: pathlib.Path) -> None:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    with open(log, "w") as f:
        code = subprocess.run(
            [sys.executable, "-c", TRAIN, *argv], stdout=subprocess.DEVNULL, stderr=f, env=env
        ).returncode
    assert code == 0, log.read_text()[-3000:]


def run_until_committed(argv: list[str], run_dir: pathlib.Path, step: int, log: pathlib.Path) -> None:
    """Runs ``argv`` and SIGKILLs it (its session: the checkpoint writer too) once checkpoint ``step`` is
    committed (orbax renames ``<step>.orbax-checkpoint-tmp`` to ``<step>``)."""
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    with open(log, "w") as f:
        process = subprocess.Popen(
            [sys.executable, "-c", TRAIN, *argv], stdout=subprocess.DEVNULL, stderr=f, env=env, start_new_session=True
        )
        deadline = time.monotonic() + 240
        try:
            while not (run_dir / str(step)).is_dir():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 240 s:\n" + log.read_text()[-3000:]
                time.sleep(0.05)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_bc_resume_is_exact(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dataset = record_dataset.record(
        record_dataset.Args(out=str(tmp_path / "data"), policy="random", env="CartPole-v1", episodes=4, progress=False)
    )
    out = tmp_path / "runs"
    split_dir = out / "cartpole_bc" / "split"
    run_until_committed(flags(dataset, out, "split", loader), split_dir, UPDATES // 2, tmp_path / "first.log")
    committed = [int(p.name) for p in split_dir.iterdir() if p.name.isdigit()]
    assert UPDATES // 2 <= max(committed) < UPDATES, committed  # killed before the run's end
    run_process([*flags(dataset, out, "split", loader), "--resume"], tmp_path / "second.log")
    train.main(flags(dataset, out, "straight", loader))

    algorithm = training.make_algorithm(presets.cli(flags(dataset, out, "straight", loader)))
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
    if loader == "stream":  # the position is in the checkpoint: 8 batches of a 5-batch epoch read
        assets = checkpoints.read_assets(str(split_dir), UPDATES)
        assert assets["loader"] == {
            "epoch": UPDATES // (len(algorithm.data) // 16),
            "batch": UPDATES % (len(algorithm.data) // 16),
        }
