"""Tests for vibe.envs.registry: vibe's and gymnax's ids, and suggestions for unknown ones."""

import pytest

from vibe.envs import gymnax_env, image_wrappers, pixel_cartpole, pixel_pendulum, registry, spaces
from vibe.envs.config import WrapperConfig


def test_vibe_ids():
    env, params = registry.make("PixelCartPole-v1")
    assert isinstance(env, pixel_cartpole.PixelCartPole)
    assert env.observation_space(params) == spaces.Image(64, 64, 3)
    assert params.max_steps_in_episode == 500
    env, params = registry.make("PixelPendulum-v1")
    assert isinstance(env, pixel_pendulum.PixelPendulum) and params.max_steps_in_episode == 200


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Breakout-MinAtar"])
def test_gymnax_ids_delegate_to_the_adapter(env_id):
    env, params = registry.make(env_id)
    assert env == gymnax_env.GymnaxEnv(env_id)
    assert params == env.default_params


def test_env_ids_list_vibe_first_and_leave_out_excluded_ones():
    ids = registry.env_ids()
    assert ids[:2] == ["PixelCartPole-v1", "PixelPendulum-v1"]
    assert {"CartPole-v1", "Freeway-MinAtar", "SpaceInvaders-MinAtar", "Asterix-MinAtar"} <= set(ids)
    assert "MNISTBandit-bsuite" not in ids
    with pytest.raises(ValueError, match="downloads MNIST"):
        registry.make("MNISTBandit-bsuite")


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [
        ("PixelCartpole-v1", "PixelCartPole-v1"),
        ("PixelPendulum-v0", "PixelPendulum-v1"),
        ("CartPole-v0", "CartPole-v1"),
        ("Breakout-Minatar", "Breakout-MinAtar"),
    ],
)
def test_unknown_ids_suggest_the_closest(env_id, suggestion):
    with pytest.raises(ValueError, match=rf"unknown env id '{env_id}'\. Did you mean .*{suggestion}"):
        registry.make(env_id)


def test_unrelated_ids_list_the_known_ones():
    with pytest.raises(ValueError, match="Known ids: PixelCartPole-v1, PixelPendulum-v1, CartPole-v1"):
        registry.make("zzz")


def test_wrappers_apply_in_order_and_name_the_field_that_does_not_fit():
    config = WrapperConfig(resize=(8, 8), grayscale=True, invert=True, frame_stack=2)
    env, params = registry.make("PixelCartPole-v1", config)
    assert isinstance(env, image_wrappers.FrameStack) and isinstance(env.env, image_wrappers.Invert)
    assert isinstance(env.env.env, image_wrappers.Grayscale) and isinstance(
        env.env.env.env, image_wrappers.ResizeWithPad
    )
    assert env.observation_space(params) == spaces.Image(8, 8, 2)
    with pytest.raises(ValueError, match=r"^WrapperConfig\.invert: Invert needs an env with an Image observation") as e:
        registry.make("CartPole-v1", WrapperConfig(invert=True))
    assert str(e.value).endswith("; change or drop --wrappers.invert for this env")
    with pytest.raises(ValueError, match=r"WrapperConfig\.invert must be True or False, got 1"):
        WrapperConfig(invert=1)  # type: ignore[arg-type]
    assert WrapperConfig().is_identity and not WrapperConfig(invert=True).is_identity


def test_crop_comes_first_and_a_window_outside_the_image_names_the_field():
    env, params = registry.make("PixelCartPole-v1", WrapperConfig(crop=(16, 0, 32, 64), resize=(16, 32)))
    assert isinstance(env, image_wrappers.ResizeWithPad) and isinstance(env.env, image_wrappers.Crop)
    assert env.observation_space(params) == spaces.Image(16, 32, 3)
    outside = r"^WrapperConfig\.crop: Crop rows 40\.\.79, columns 0\.\.63 fall outside"
    with pytest.raises(ValueError, match=outside) as e:
        registry.make("PixelCartPole-v1", WrapperConfig(crop=(40, 0, 40, 64)))
    assert str(e.value).endswith("the 64x64 image; change or drop --wrappers.crop for this env")
    for bad in [(0, 0, 8), (-1, 0, 8, 8), (0, 0, 0, 8), (0, 0, 8, 8.0)]:
        with pytest.raises(ValueError, match=r"WrapperConfig\.crop must be four ints \(top, left, height, width\)"):
            WrapperConfig(crop=bad)  # type: ignore[arg-type]
    assert WrapperConfig(crop=[1, 2, 3, 4]).crop == (1, 2, 3, 4)  # type: ignore[arg-type]
    assert not WrapperConfig(crop=(0, 0, 8, 8)).is_identity
