"""Tests for vibe.algorithms.ppo.config: derived sizes, validation messages, no JAX import."""

import dataclasses
import subprocess
import sys

import pytest

from vibe.algorithms.ppo.config import PPOConfig
from vibe.networks.config import ACTIVATIONS, EncoderConfig


def test_defaults_give_purejaxrl_sizes():
    config = PPOConfig()
    assert config.batch_size == 512
    assert config.minibatch_size == 128
    assert config.num_updates == 976  # 500_000 // 512
    assert config.normalize_obs is False  # CartPole results stay those of the unnormalised run


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_minibatches": 3}, r"num_minibatches=3 must divide num_envs \* num_steps = 4 \* 128 = 512"),
        ({"lr": 0.0}, "PPOConfig.lr must be > 0, got 0.0"),
        ({"gamma": 1.5}, r"PPOConfig.gamma must be in \[0, 1\], got 1.5"),
        ({"gae_lambda": -0.1}, "PPOConfig.gae_lambda"),
        ({"num_envs": 0}, "PPOConfig.num_envs must be a positive integer, got 0"),
        ({"update_epochs": -1}, "PPOConfig.update_epochs"),
        ({"total_timesteps": 100}, "PPOConfig.total_timesteps=100 is less than one rollout"),
        ({"clip_eps": 0.0}, "PPOConfig.clip_eps"),
        ({"init_log_std": float("nan")}, "PPOConfig.init_log_std must be a finite number, got nan"),
        ({"normalize_obs": 1}, "PPOConfig.normalize_obs must be True or False, got 1"),
        ({"shared_encoder": "yes"}, "PPOConfig.shared_encoder must be True or False, got 'yes'"),
    ],
)
def test_validation_names_the_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**overrides)


def test_the_encoder_defaults_to_a_tanh_mlp():
    config = PPOConfig()
    assert config.encoder == EncoderConfig(kind="mlp", hidden_sizes=(64, 64), activation="tanh")


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
        PPOConfig(encoder=EncoderConfig(**overrides))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PPOConfig().lr = 1.0  # type: ignore[misc]


def test_activations_match_the_networks():
    from vibe.networks import mlp

    assert set(ACTIVATIONS) == set(mlp.ACTIVATIONS)


def test_config_module_imports_no_jax():
    code = (
        "import sys, vibe.algorithms.ppo.config; print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
