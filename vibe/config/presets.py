"""The registry of named training configurations, and the `train <preset>` CLI.

    train cartpole_ppo
    train pendulum_sac --algo.lr 1e-3 --exp-name fast

Names read `<env>_<algo>[_variant]`. Each preset is a complete TrainConfig;
flags override any field. Every preset parses and trains a few updates in
presets_test.py.
"""

import difflib
import sys

import tyro

from vibe.algorithms.bc.config import BCConfig, DataConfig
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.config.train_config import TYRO_CONFIG, TrainConfig
from vibe.core.usage import bazel_prog
from vibe.envs.config import WrapperConfig
from vibe.networks.config import MINATAR_CNN, CNNConfig, EncoderConfig, ViTConfig
from vibe.train.config import RunnerConfig

_PRESETS: list[tuple[str, TrainConfig]] = [
    (
        "PPO on CartPole-v1 with PureJaxRL's hyper-parameters: 500k steps, greedy return 500.",
        TrainConfig(name="cartpole_ppo", env="CartPole-v1", algo=PPOConfig()),
    ),
    (
        "PPO on Acrobot-v1 (discrete, sparse -1 rewards): 500k steps.",
        TrainConfig(
            name="acrobot_ppo",
            env="Acrobot-v1",
            algo=PPOConfig(num_envs=8, num_steps=128, total_timesteps=500_000, lr=1e-3, ent_coef=0.0),
        ),
    ),
    (
        "PPO with a Gaussian policy on Pendulum-v1 (torque ±2): 524k steps, greedy return about -200.",
        TrainConfig(
            name="pendulum_ppo",
            env="Pendulum-v1",
            algo=PPOConfig(
                num_envs=16,
                num_steps=128,
                total_timesteps=524_288,
                update_epochs=10,
                num_minibatches=32,
                gamma=0.95,
                lr=1e-3,
                ent_coef=0.0,
            ),
        ),
    ),
    (
        "Double DQN on CartPole-v1: 100k steps, greedy return >= 475.",
        TrainConfig(name="cartpole_dqn", env="CartPole-v1", algo=DQNConfig()),
    ),
    (
        "SAC on Pendulum-v1 (torque ±2, automatic entropy): 20k steps, greedy return >= -200.",
        TrainConfig(name="pendulum_sac", env="Pendulum-v1", algo=SACConfig()),
    ),
    (
        "PPO with PureJaxRL's MinAtar CNN (16 3x3 filters, relu 64), one torso under both heads, on Breakout-MinAtar, "
        "5M steps (lr 2.5e-3, entropy 0.03): greedy return 86.5 at the end (seed 0; 18.1 / 19.9 / 30.0 at 0.5M / 1M / "
        "2M, 86.4 from 2.5M), in about 9 minutes on 2 cores.",
        TrainConfig(
            name="breakout_minatar_ppo",
            env="Breakout-MinAtar",
            algo=PPOConfig(
                num_envs=64,
                num_steps=128,
                total_timesteps=5_000_000,
                update_epochs=4,
                num_minibatches=8,
                # PureJaxRL's MLP settings (lr 5e-3, entropy 0.01, 1M steps) stop this CNN at greedy 21.5; lr 2.5e-3
                # (22.4), 32-step rollouts (16.7) or relu 256 (22.4) stop near 22 too; entropy 0.03 gets seed 0 past it.
                lr=2.5e-3,
                ent_coef=0.03,
                encoder=EncoderConfig(kind="cnn", hidden_sizes=(64,), activation="relu", cnn=MINATAR_CNN),
                # One torso: 1.7x the steps/s of two (9.9k against 5.8k); over 5M steps (the P7 bench) greedy 79.6
                # against 51.5 with two, and with two the 2M run ended at 29.0, with one at 27.6.
                shared_encoder=True,
            ),
        ),
    ),
    (
        "Double DQN with the MinAtar CNN on Breakout-MinAtar, 200k steps (greedy return 11.2, seed 0); the "
        "100k-transition replay buffer keeps the bool images as bool (81 MB; 321 MB as float32).",
        TrainConfig(
            name="breakout_minatar_dqn",
            env="Breakout-MinAtar",
            algo=DQNConfig(
                num_envs=8,
                total_timesteps=200_000,
                buffer_size=100_000,
                batch_size=64,
                lr=1e-3,
                learning_starts=5_000,
                exploration_fraction=0.1,
                end_e=0.01,
                encoder=EncoderConfig(kind="cnn", hidden_sizes=(128,), activation="relu", cnn=MINATAR_CNN),
            ),
        ),
    ),
    (
        "PPO with a small CNN on PixelCartPole-v1 (rows 16-47 of its 64x64 frames, grayscale, inverted to a black "
        "background, 4 stacked), 4 envs, 344k steps: greedy return 500 from 206k steps to the end, in under 2 "
        "minutes on 2 cores.",
        TrainConfig(
            name="pixel_cartpole_ppo",
            env="PixelCartPole-v1",
            # Rows 16-47 of the 64x64 frame hold the cart and the whole pole (the rest is always background): half the
            # pixels, the same picture. Inverted: on gym's white background the network stayed at greedy ~38. 4 frames:
            # between consecutive frames the pole moves about a tenth of a pixel. Full 64x64 frames take over twice the
            # time a step; at 32x32 (the whole frame shrunk) every greedy episode (ending at 245) lost the pole.
            wrappers=WrapperConfig(crop=(16, 0, 32, 64), grayscale=True, invert=True, frame_stack=4),
            algo=PPOConfig(
                # 4 envs (512 steps an update, PureJaxRL's CartPole batch): seed 0 greedy 481 after 147k steps and 500
                # from 197k; 8 envs needed 295k, 16 envs (the old preset) 664k.
                num_envs=4,
                num_steps=128,
                total_timesteps=344_064,
                update_epochs=4,
                num_minibatches=4,
                lr=1e-3,
                encoder=EncoderConfig(
                    kind="cnn",
                    hidden_sizes=(64,),
                    activation="relu",
                    # A 4x4 stride-4 stem (one vector per 4x4 patch, as a ViT's) then 3x3 stride 2: 4x8x32 features.
                    cnn=CNNConfig(channels=(16, 32), kernel_sizes=(4, 3), strides=(4, 2)),
                ),
            ),
        ),
    ),
    (
        "PPO with a small ViT (5x5 patches: 4 tokens of 10x10 images) on Breakout-MinAtar, 524k steps: greedy return "
        "15.5 (seed 0).",
        TrainConfig(
            name="breakout_minatar_ppo_vit",
            env="Breakout-MinAtar",
            algo=PPOConfig(
                num_envs=64,
                num_steps=128,
                total_timesteps=524_288,
                update_epochs=4,
                num_minibatches=8,
                lr=1e-3,
                encoder=EncoderConfig(
                    kind="vit",
                    hidden_sizes=(64,),
                    activation="relu",
                    vit=ViTConfig(patch_size=5, width=64, depth=1, num_heads=4, mlp_dim=128),
                ),
            ),
        ),
    ),
    (
        "Behaviour cloning on CartPole-v1 from --data.dataset PATH (e.g. 50 expert episodes from record_dataset): "
        "2k updates of 256 samples, greedy return >= 475 from a PPO expert.",
        TrainConfig(name="cartpole_bc", env="CartPole-v1", algo=BCConfig(), runner=RunnerConfig(eval_every=500)),
    ),
    (
        "Behaviour cloning (MSE, normalised) on Pendulum-v1 from --data.dataset PATH: 5k updates of 256 samples.",
        TrainConfig(
            name="pendulum_bc",
            env="Pendulum-v1",
            algo=BCConfig(num_updates=5_000, data=DataConfig(normalize=True)),
            runner=RunnerConfig(eval_every=1_000),
        ),
    ),
    (
        "Implicit Q-learning on Pendulum-v1 from --data.dataset PATH (the paper's hyper-parameters, normalised "
        "states): 5k updates of 256 samples; beats pendulum_bc on mixed expert + random data.",
        TrainConfig(
            name="pendulum_iql",
            env="Pendulum-v1",
            algo=IQLConfig(num_updates=5_000, data=DataConfig(normalize=True)),
            runner=RunnerConfig(eval_every=1_000),
        ),
    ),
    (
        "Implicit Q-learning (discrete: per-action Q heads, a categorical actor) on CartPole-v1 from "
        "--data.dataset PATH: 1k updates of 256 samples, Adam 1e-3, Polyak 0.02, normalised states; from 100 "
        "uniformly random episodes (mean return 22) a greedy return of 240-320 (best 330-490, 3 seeds).",
        TrainConfig(
            name="cartpole_iql",
            env="CartPole-v1",
            algo=IQLConfig(num_updates=1_000, lr=1e-3, tau=0.02, data=DataConfig(normalize=True)),
            runner=RunnerConfig(eval_every=250),
        ),
    ),
    (
        "A tiny PPO run on CartPole-v1 that finishes in seconds (for checking a setup).",
        TrainConfig(
            name="debug",
            env="CartPole-v1",
            algo=PPOConfig(num_envs=2, num_steps=16, total_timesteps=256, encoder=EncoderConfig(hidden_sizes=(32, 32))),
            runner=RunnerConfig(updates_per_chunk=4, eval_episodes=2),
        ),
    ),
]


def _registry() -> dict[str, tuple[str, TrainConfig]]:
    registry: dict[str, tuple[str, TrainConfig]] = {}
    for description, config in _PRESETS:
        if config.name in registry:
            raise ValueError(f"preset names must be unique; {config.name!r} is registered twice")
        registry[config.name] = (description, config)
    return registry


PRESETS = _registry()


def get(name: str) -> TrainConfig:
    """The preset called `name`; an unknown name raises with the closest ones."""
    if name not in PRESETS:
        raise KeyError(unknown_message(name))
    return PRESETS[name][1]


def unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.0)
    return f"unknown preset {name!r}; did you mean {' or '.join(repr(c) for c in close)}? (all: {', '.join(PRESETS)})"


def cli(args: list[str] | None = None) -> TrainConfig:
    """`<preset> [--flag value ...]`: the preset with the flags applied.

    Exits with status 2 (and "did you mean …") for an unknown preset name.
    """
    args = sys.argv[1:] if args is None else args
    first = next((a for a in args if not a.startswith("-")), None)
    if first is not None and first not in PRESETS and not any(a in ("-h", "--help") for a in args):
        print(f"error: {unknown_message(first)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        return tyro.extras.overridable_config_cli(PRESETS, args=args, config=TYRO_CONFIG, prog=bazel_prog())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
