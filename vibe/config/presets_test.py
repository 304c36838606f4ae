"""Every registered preset parses, takes overrides, and names its algorithm."""

import json
import subprocess
import sys

import pytest

from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.config import presets
from vibe.config.train_config import TrainConfig
from vibe.core import serialize
from vibe.networks.config import EncoderConfig

REQUIRED = {"cartpole_ppo", "cartpole_dqn", "pendulum_sac", "pendulum_ppo", "acrobot_ppo", "cartpole_iql", "debug"}


def test_required_presets_are_registered_under_their_own_names():
    assert set(presets.PRESETS) >= REQUIRED
    assert all(config.name == name for name, (_, config) in presets.PRESETS.items())


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_parses_and_takes_overrides(name):
    config = presets.cli([name, "--algo.lr", "0.000123", "--exp-name", "override", "--seed", "7"])
    assert config.name == name
    assert type(config.algo) is type(presets.get(name).algo)
    assert (config.algo.lr, config.runner.exp_name, config.runner.seed) == (0.000123, "override", 7)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_round_trips_through_the_json_a_checkpoint_stores(name):
    preset = presets.get(name)
    stored = json.loads(json.dumps(serialize.to_json(preset)))  # as written to config.json and the assets
    assert serialize.from_json(TrainConfig, stored) == preset
    assert stored["algo"]["encoder"] == serialize.to_json(preset.algo.encoder)


def test_encoder_flags_override_the_presets_torso():
    config = presets.cli(["pendulum_sac", "--algo.encoder.hidden-sizes", "128", "128", "128"])
    assert config.algo.encoder == EncoderConfig(hidden_sizes=(128, 128, 128), activation="relu")
    config = presets.cli(["debug", "--algo.encoder.activation", "relu"])
    assert config.algo.encoder == EncoderConfig(hidden_sizes=(32, 32), activation="relu")


def test_presets_pick_the_algorithm_and_the_env_it_needs():
    assert (presets.get("pendulum_sac").env, type(presets.get("pendulum_sac").algo)) == ("Pendulum-v1", SACConfig)
    assert (presets.get("cartpole_dqn").env, type(presets.get("cartpole_dqn").algo)) == ("CartPole-v1", DQNConfig)
    assert (presets.get("pendulum_ppo").env, type(presets.get("pendulum_ppo").algo)) == ("Pendulum-v1", PPOConfig)
    assert presets.get("pendulum_sac").algo_name == "sac"


def test_duplicate_names_are_rejected(monkeypatch):
    monkeypatch.setattr(presets, "_PRESETS", presets._PRESETS + presets._PRESETS[:1])
    with pytest.raises(ValueError, match="'cartpole_ppo' is registered twice"):
        presets._registry()


def test_unknown_preset_suggests_the_closest_name():
    code = "import sys; from vibe.config import presets; presets.cli(sys.argv[1:])"
    result = subprocess.run([sys.executable, "-c", code, "pendulum_sack"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown preset 'pendulum_sack'; did you mean 'pendulum_sac'" in result.stderr
    with pytest.raises(KeyError, match="did you mean 'cartpole_dqn'"):
        presets.get("cartpole_dq")
