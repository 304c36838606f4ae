"""Every registered preset trains a few updates end to end (shrunk by flags, as a user would)."""

import pytest

from vibe.config import presets
from vibe.logging.metrics import read_metrics
from vibe.scripts import train

# Flags that shrink each algorithm's run to a few updates, learning included.
SHRINK = {
    "ppo": [
        "--algo.num-envs",
        "2",
        "--algo.num-steps",
        "8",
        "--algo.num-minibatches",
        "2",
        "--algo.total-timesteps=48",
    ],
    "dqn": ["--algo.total-timesteps", "96", "--algo.learning-starts", "32", "--algo.batch-size", "8"],
    "sac": ["--algo.total-timesteps", "32", "--algo.learning-starts", "16", "--algo.batch-size", "8"],
}


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_preset_trains_a_few_updates(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    algo = presets.get(name).algo_name
    result = train.main(
        [name, *SHRINK[algo], "--eval-episodes", "2", "--updates-per-chunk", "2", "--wandb-mode", "disabled"]
    )
    rows = read_metrics(f"{result.run_dir}/metrics.jsonl")
    assert result.run_dir == str(tmp_path / "checkpoints" / name / "default")
    assert rows[-1]["eval/episodes"] == 2
    losses = [key for key in rows[-2] if key.startswith("loss/")]
    assert losses, f"{name}: no loss metrics logged: {sorted(rows[-2])}"
    assert int(result.state.step) == rows[-2]["update"]
