import subprocess
import sys

import pytest

from vibe.config.train_config import TrainConfig, cli
from vibe.networks.config import EncoderConfig


def test_defaults_are_the_cartpole_ppo_run():
    config = cli([])
    assert config == TrainConfig()
    assert (config.name, config.env, config.runner.exp_name) == ("cartpole_ppo", "CartPole-v1", "default")


def test_flags_override_nested_and_flattened_fields():
    config = cli(["--algo.lr", "1e-3", "--algo.num-steps", "64", "--exp-name", "x", "--overwrite", "--seed", "3"])
    assert (config.algo.lr, config.algo.num_steps) == (1e-3, 64)
    assert (config.runner.exp_name, config.runner.overwrite, config.runner.seed) == ("x", True, 3)


def test_encoder_flags_set_the_torso():
    config = cli(["--algo.encoder.hidden-sizes", "256", "256", "--algo.encoder.activation", "relu"])
    assert config.algo.encoder == EncoderConfig(hidden_sizes=(256, 256), activation="relu")
    assert cli(["--eval-every", "5"]).runner.eval_every == 5


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from vibe.config.train_config import cli; cli(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo.lr", "-1e-3"], "PPOConfig.lr must be > 0"),
        (["--algo.num-minibatches", "3"], "PPOConfig.num_minibatches=3 must divide"),
        (["--updates-per-chunk", "0"], "RunnerConfig.updates_per_chunk=0 must be >= 1"),
        (["--algo.learning-rate", "1"], "--algo.learning-rate"),
        (["--algo.hidden-sizes", "32", "32"], "--algo.hidden-sizes"),  # moved to --algo.encoder.hidden-sizes
        (["--algo.encoder.activation", "swish"], "EncoderConfig.activation='swish' is unknown"),
        (["--eval-every", "-1"], "RunnerConfig.eval_every=-1 must be >= 0"),
    ],
)
def test_bad_flags_exit_non_zero_with_a_message_naming_the_field(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    # tyro draws a box around long messages; compare without the line breaks.
    assert message in " ".join(line.strip(" │") for line in result.stderr.splitlines())
