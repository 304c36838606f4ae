"""PPO and DQN on pixels: learning gates, one compile per run, and the encoder's one-line errors.

The gates (marked `learning`, select them with `-m learning`) train a vision preset with a fixed seed
(the preset's `runner.seed`) for its first N env steps (the preset's learning-rate schedule, cut
short: the same curve as `train <preset>` up to N) and check the greedy return over 32 episodes.
Thresholds and step counts are read off curves measured with these seeds; each comment says what.
The pixel CartPole gate is the whole pixel_cartpole_ppo run (greedy >= 400).
The other tests are quick: the train chunk traces once across calls for PPO and DQN with a cnn and
a vit torso on image observations, and a torso that cannot read the env exits 2 with one line.
"""

import dataclasses

import jax
import numpy as np
import pytest

from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.config import presets
from vibe.config.train_config import TrainConfig, cli
from vibe.envs.config import WrapperConfig
from vibe.networks.config import CNNConfig, EncoderConfig, ViTConfig
from vibe.scripts import training
from vibe.train.loop import make_train_chunk


def train_ppo(argv: list[str]) -> None:
    """What `train_ppo <argv>` runs: flags over the cartpole_ppo preset, then training."""
    training.train(cli(argv, default=presets.get("cartpole_ppo")))


EVAL_EPISODES = 32
EVAL_KEY = 123


def greedy_after(preset: str, env_steps: int) -> np.ndarray:
    """The greedy returns (32 episodes) after the first `env_steps` of `preset`'s run, in one chunk call."""
    config = presets.get(preset)
    algo = training.make_algorithm(config)
    updates = env_steps // algo.steps_per_update
    assert 0 < updates <= algo.num_updates
    chunk = make_train_chunk(algo.train_step)
    state, totals = chunk(jax.jit(algo.init)(jax.random.PRNGKey(config.runner.seed)), np.int32(updates))
    assert chunk.traces == [1]
    assert int(state.env_steps) == updates * algo.steps_per_update
    returns = np.asarray(jax.jit(algo.evaluate, static_argnums=2)(state, jax.random.PRNGKey(EVAL_KEY), EVAL_EPISODES))
    train_return = float(totals.episode_sums["return"]) / max(float(totals.episode_count), 1.0)
    print(f"{preset} after {int(state.env_steps)} steps: greedy {returns.mean():.1f}, training {train_return:.1f}")
    return returns


# Read off measured curves (seed 0 unless said; greedy over 32 episodes); each gate trains its first N
# steps only, so the preset's schedule (and its full run) is unchanged.
# breakout_minatar_ppo (5M steps, one torso, lr 2.5e-3, entropy 0.03), `train` run: greedy 27.5 / 41.2 / 86.7 /
# 61.8 / 48.9 after 0.5M / 1M / 1.5M / 2M / 2.5M steps, 86.4-86.7 from 3M, 86.5 at the end (373 s at 13.4k steps/s).
# This file's seeding (init from PRNGKey(0)): greedy 15.8 after 262k steps.
BREAKOUT_STEPS, BREAKOUT_THRESHOLD = 262_144, 8.0
# breakout_minatar_ppo_vit, `train` run: greedy 3.0 / 7.3 / 8.0 / 9.1 / 22.5 after 49k / 98k / 147k / 197k / 524k
# steps; this file's seeding: 10.5 after 197k.
VIT_STEPS, VIT_THRESHOLD = 196_608, 5.0
# pixel_cartpole_ppo (344k steps, 4 envs: rows 16-47 of the 64x64 frames, grayscale, inverted, 4 stacked): greedy
# 121 / 250 / 416 / 500 after 49k / 98k / 147k / 197k steps and 500 to the end, 105 s of training at ~3.3k steps/s
# (seed 0; random play scores about 20). Seed 1: 156 / 427 / 500 after 49k / 98k / 147k, 500 to the end; seed 2:
# 97 / 221 / 498 / 500 after 49k / 98k / 147k / 197k, 500 to the end. The gate is the whole run (~105 s).
PIXEL_THRESHOLD = 400.0


@pytest.mark.learning
def test_cnn_ppo_balances_pixel_cartpole():
    config = presets.get("pixel_cartpole_ppo")
    returns = greedy_after("pixel_cartpole_ppo", config.algo.total_timesteps)
    assert returns.mean() >= PIXEL_THRESHOLD, f"greedy returns {returns}"


@pytest.mark.learning
def test_cnn_ppo_learns_breakout_minatar():
    returns = greedy_after("breakout_minatar_ppo", BREAKOUT_STEPS)
    assert returns.mean() >= BREAKOUT_THRESHOLD, f"greedy returns {returns}"


@pytest.mark.learning
def test_vit_ppo_learns_breakout_minatar():
    # A random policy scores about 0.5 on Breakout-MinAtar.
    returns = greedy_after("breakout_minatar_ppo_vit", VIT_STEPS)
    assert returns.mean() >= VIT_THRESHOLD, f"greedy returns {returns}"


SMALL_CNN = EncoderConfig(kind="cnn", hidden_sizes=(16,), activation="relu", cnn=CNNConfig(channels=(4,)))
SMALL_VIT = EncoderConfig(
    kind="vit", hidden_sizes=(), activation="relu", vit=ViTConfig(patch_size=5, width=16, depth=1, mlp_dim=32)
)
PIXEL_SMALL = WrapperConfig(resize=(20, 20), grayscale=True, frame_stack=2)


def dqn_short(encoder: EncoderConfig) -> DQNConfig:
    return DQNConfig(
        num_envs=4, total_timesteps=4 * 12, learning_starts=16, buffer_size=64, batch_size=8, encoder=encoder
    )


# Every pair of (algorithm, torso, env) values appears once: four runs, not all eight (each compiles for 8-12 s).
@pytest.mark.parametrize(
    ("algo_name", "encoder", "env", "wrappers"),
    [
        ("ppo", SMALL_CNN, "PixelCartPole-v1", PIXEL_SMALL),
        ("ppo", SMALL_VIT, "Breakout-MinAtar", WrapperConfig()),
        ("dqn", SMALL_CNN, "Breakout-MinAtar", WrapperConfig()),
        ("dqn", SMALL_VIT, "PixelCartPole-v1", PIXEL_SMALL),
    ],
    ids=["ppo-cnn-pixel", "ppo-vit-minatar", "dqn-cnn-minatar", "dqn-vit-pixel"],
)
def test_train_chunk_compiles_once_across_calls_on_images(algo_name, encoder, env, wrappers):
    algo_config: PPOConfig | DQNConfig
    if algo_name == "ppo":
        algo_config = PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 4, num_minibatches=2, encoder=encoder)
    else:
        algo_config = dqn_short(encoder)
    algo = training.make_algorithm(TrainConfig(name="images", env=env, wrappers=wrappers, algo=algo_config))
    chunk = make_train_chunk(algo.train_step)
    # Jitted, as the runner does: eagerly, FrameStack's reset hands out one array as both the env state's
    # frames and the observation, and the donated chunk refuses a buffer donated twice.
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    obs_dtype = state.obs.dtype
    assert obs_dtype in (np.bool_, np.uint8)  # images stay in their env dtype in the state
    for k in (2, 1, 1):  # a shorter last chunk reuses the executable (k is traced)
        state, _ = chunk(state, np.int32(k))
    assert chunk.traces == [1]
    assert state.obs.dtype == obs_dtype


@pytest.mark.parametrize(
    ("flags", "parts"),
    [
        (
            ["--env", "Breakout-MinAtar", "--algo.encoder.kind", "vit", "--algo.encoder.vit.patch-size", "3"],
            ["Breakout-MinAtar", "10x10", "--algo.encoder.vit.patch-size"],
        ),
        (["--env", "CartPole-v1", "--algo.encoder.kind", "cnn"], ["CartPole-v1", "Box(", "--algo.encoder.kind"]),
    ],
    ids=["vit-patches", "cnn-on-vectors"],
)
def test_an_encoder_that_cannot_read_the_env_exits_2_with_one_line(tmp_path, monkeypatch, capsys, flags, parts):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        train_ppo([*flags, "--wandb-mode", "disabled"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(part in lines[0] for part in parts), lines[0]
    assert not any(tmp_path.iterdir())  # no run directory (nor checkpoints/) was created


def test_wrapper_flags_build_the_wrapped_env():
    flags = ["--wrappers.crop", "8", "0", "48", "64", "--wrappers.frame-stack", "3", "--wrappers.resize", "24", "24"]
    config = presets.cli(["pixel_cartpole_ppo", *flags])
    assert config.wrappers == dataclasses.replace(
        presets.get("pixel_cartpole_ppo").wrappers, crop=(8, 0, 48, 64), frame_stack=3, resize=(24, 24)
    )
    algo = training.make_algorithm(config)
    assert tuple(algo.env.observation_space(algo.env_params).shape) == (24, 24, 3)  # 48x64 letterboxed into 24x24


def test_a_wrapper_the_env_cannot_take_exits_2_naming_the_field(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        train_ppo(["--env", "Breakout-MinAtar", "--wrappers.grayscale", "--wandb-mode", "disabled"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "TrainConfig.wrappers.grayscale" in err and "Traceback" not in err
    assert "change or drop --wrappers.grayscale for this env" in err
    assert not any(tmp_path.iterdir())
