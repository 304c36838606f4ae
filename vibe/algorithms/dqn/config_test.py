"""Tests for vibe.algorithms.dqn.config: derived sizes, validation messages, no JAX import."""

import dataclasses
import subprocess
import sys

import pytest

from vibe.algorithms.dqn.config import DQNConfig
from vibe.networks.config import ACTIVATIONS, EncoderConfig


def test_derived_sizes():
    config = DQNConfig(num_envs=4, train_frequency=2, gradient_steps=3, total_timesteps=1000, learning_starts=100)
    assert config.steps_per_update == 8
    assert config.num_updates == 125
    # train_steps 13..125 learn (13 * 8 = 104 >= 100 env steps): 113 of them, 3 gradient steps each.
    assert config.num_gradient_steps == 339
    assert DQNConfig(total_timesteps=1000, exploration_fraction=0.25, learning_starts=0).exploration_steps == 250


def test_no_warm_up_learns_from_the_first_step():
    config = DQNConfig(num_envs=2, total_timesteps=100, learning_starts=0, batch_size=2, buffer_size=10)
    assert config.num_gradient_steps == config.num_updates * config.gradient_steps


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_envs": 0}, "DQNConfig.num_envs must be a positive integer, got 0"),
        ({"gradient_steps": -1}, "DQNConfig.gradient_steps"),
        ({"target_update_interval": 0}, "DQNConfig.target_update_interval"),
        ({"learning_starts": -5}, "DQNConfig.learning_starts must be an integer >= 0, got -5"),
        ({"gamma": 1.5}, r"DQNConfig.gamma must be in \[0, 1\], got 1.5"),
        ({"tau": 0.0}, "DQNConfig.tau=0.0 never updates the target network"),
        ({"end_e": -0.1}, "DQNConfig.end_e"),
        ({"exploration_fraction": 2.0}, "DQNConfig.exploration_fraction"),
        ({"lr": 0.0}, "DQNConfig.lr must be > 0, got 0.0"),
        ({"huber_delta": -1.0}, "DQNConfig.huber_delta"),
        ({"total_timesteps": 2**31}, r"DQNConfig.total_timesteps=2147483648 must be below 2\*\*31"),
        ({"total_timesteps": 4, "num_envs": 8}, "DQNConfig.total_timesteps=4 is less than one train_step"),
        ({"learning_starts": 100_000, "total_timesteps": 100_000}, "DQNConfig.learning_starts=100000 is not below"),
        ({"buffer_size": 4, "num_envs": 8}, "DQNConfig.buffer_size=4 is smaller than one train_step"),
        ({"batch_size": 256, "buffer_size": 128}, "DQNConfig.batch_size=256 is larger than buffer_size=128"),
    ],
)
def test_validation_names_the_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        DQNConfig(**overrides)


def test_the_encoder_defaults_to_a_128x128_relu_mlp():
    config = DQNConfig()
    assert config.encoder == EncoderConfig(kind="mlp", hidden_sizes=(128, 128), activation="relu")


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
        DQNConfig(encoder=EncoderConfig(**overrides))


def test_config_is_frozen_and_lists_become_tuples():
    config = DQNConfig(encoder=EncoderConfig(hidden_sizes=[32, 32]))  # type: ignore[arg-type]
    assert config.encoder.hidden_sizes == (32, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]


def test_config_has_no_env_and_no_seed():
    # The train config owns the env and the runner owns the seed.
    names = {field.name for field in dataclasses.fields(DQNConfig)}
    assert not names & {"env", "env_name", "seed"}


def test_activations_match_the_networks():
    from vibe.networks import mlp

    assert set(ACTIVATIONS) == set(mlp.ACTIVATIONS)


def test_config_module_imports_no_jax():
    code = (
        "import sys, vibe.algorithms.dqn.config; print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
