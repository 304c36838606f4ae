"""Every registered preset trains a few updates end to end (shrunk by flags, as a user would)."""

import os

import jax
import pytest

from vibe.config import presets
from vibe.logging.metrics import read_metrics
from vibe.scripts import record_dataset, train

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
    # Offline algorithms also get a small random dataset of the preset's env (see `datasets`).
    "bc": ["--algo.num-updates", "4", "--data.batch-size", "8"],
    "iql": ["--algo.num-updates", "4", "--data.batch-size", "8"],
}
OFFLINE = ("bc", "iql")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """``env id -> dataset``: two episodes of uniformly random actions, recorded by record_dataset on first use."""
    root = tmp_path_factory.mktemp("datasets")
    recorded = {}

    def get(env_id: str) -> str:
        if env_id not in recorded:
            os.environ.setdefault("HF_HOME", str(root / "hf"))
            args = record_dataset.Args(out=str(root / env_id), policy="random", env=env_id, episodes=2, progress=False)
            recorded[env_id] = str(record_dataset.record(args))
        return recorded[env_id]

    return get


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_preset_trains_a_few_updates(name, tmp_path, monkeypatch, datasets):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    algo = presets.get(name).algo_name
    assert algo in SHRINK, f"{name}: add the flags that shrink a {algo} run to a few updates to SHRINK"
    data = ["--data.dataset", datasets(presets.get(name).env)] if algo in OFFLINE else []
    result = train.main(
        [name, *SHRINK[algo], *data, "--eval-episodes", "2", "--updates-per-chunk", "2", "--wandb-mode", "disabled"]
    )
    rows = read_metrics(f"{result.run_dir}/metrics.jsonl")
    assert result.run_dir == str(tmp_path / "checkpoints" / name / "default")
    last_chunk = rows[-2]  # then the final evaluation, at the same step
    assert rows[-1]["eval/episodes"] == 2 and rows[-1]["step"] == last_chunk["step"]
    assert int(result.state.step) == last_chunk["update"]
    # It learned: the last chunk's gradient steps logged nonzero losses (DQN and SAC log 0.0 before learning
    # starts) and the optimizer stepped.
    losses = {key: value for key, value in last_chunk.items() if key.startswith("loss/")}
    assert losses, f"{name}: no loss metrics logged: {sorted(last_chunk)}"
    assert all(value != 0 for value in losses.values()), f"{name}: {losses}"
    assert optimizer_steps(result.state) > 0


def optimizer_steps(state) -> int:
    """Gradient steps the state has taken: the step count of its optimizer (Adam's, and its schedule's)."""
    paths = jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
    counts = {int(leaf) for path, leaf in paths if jax.tree_util.keystr(path).endswith(".count")}
    assert len(counts) == 1, counts
    return counts.pop()
