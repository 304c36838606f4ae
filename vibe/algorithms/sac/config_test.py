"""Tests for vibe.algorithms.sac.config: derived sizes, validation messages, no JAX import."""

import dataclasses
import subprocess
import sys

import pytest

from vibe.algorithms.sac.config import SACConfig
from vibe.networks.config import ACTIVATIONS, EncoderConfig


def test_defaults_give_one_gradient_step_per_env_step():
    config = SACConfig()
    assert config.gradient_steps == config.num_envs
    assert config.num_updates * config.num_envs == config.total_timesteps
    assert SACConfig(num_envs=4, utd_ratio=0.5).gradient_steps == 2
    assert SACConfig(num_envs=1, utd_ratio=3.0).gradient_steps == 3
    assert SACConfig(num_envs=3, total_timesteps=10).num_updates == 3


def test_config_has_no_env_and_no_seed():
    names = {field.name for field in dataclasses.fields(SACConfig)}
    assert not names & {"env", "env_name", "seed"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_envs": 0}, "SACConfig.num_envs must be a positive integer, got 0"),
        ({"batch_size": -1}, "SACConfig.batch_size must be a positive integer"),
        ({"learning_starts": -5}, "SACConfig.learning_starts must be an integer >= 0, got -5"),
        ({"utd_ratio": 0.3, "num_envs": 4}, r"SACConfig.utd_ratio=0.3 times num_envs=4 must be a positive whole"),
        ({"utd_ratio": 0.0}, "SACConfig.utd_ratio=0.0"),
        ({"gamma": 1.5}, r"SACConfig.gamma must be in \[0, 1\], got 1.5"),
        ({"tau": 0.0}, r"SACConfig.tau must be in \(0, 1\], got 0.0"),
        ({"lr": 0.0}, "SACConfig.lr must be > 0, got 0.0"),
        ({"init_alpha": -1.0}, "SACConfig.init_alpha must be > 0"),
        ({"target_entropy_scale": -1.0}, "SACConfig.target_entropy_scale must be >= 0"),
        ({"log_std_min": 3.0}, "SACConfig.log_std_min=3.0 must be < log_std_max=2.0"),
        ({"buffer_size": 500}, r"SACConfig.buffer_size=500 is smaller than the batches one train_step draws"),
        ({"total_timesteps": 2}, "SACConfig.total_timesteps=2 is less than one train_step"),
    ],
)
def test_validation_names_the_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        SACConfig(**overrides)


def test_the_encoder_defaults_to_a_relu_mlp():
    config = SACConfig()
    assert config.encoder == EncoderConfig(kind="mlp", hidden_sizes=(64, 64), activation="relu")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_sizes": (64, 0)}, r"EncoderConfig.hidden_sizes must be positive ints, got \(64, 0\)"),
        ({"hidden_sizes": ()}, "EncoderConfig.hidden_sizes must "),  # an mlp needs a layer
        ({"activation": "swish"}, "EncoderConfig.activation='swish' is unknown"),
        ({"kind": "rnn"}, "EncoderConfig.kind='rnn' is unknown; use mlp, cnn or vit"),
    ],
)
def test_encoder_validation_names_the_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        SACConfig(encoder=EncoderConfig(**overrides))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SACConfig().lr = 1.0  # type: ignore[misc]


def test_activations_match_the_networks():
    from vibe.networks import mlp

    assert set(ACTIVATIONS) == set(mlp.ACTIVATIONS)


def test_config_module_imports_no_jax():
    code = (
        "import sys, vibe.algorithms.sac.config; print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
