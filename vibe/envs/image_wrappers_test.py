"""Tests for vibe.envs.image_wrappers: spaces, and frame stacks that never mix episodes in vectorised training."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.envs import gymnax_env, normalize, pixel_cartpole, spaces, wrappers
from vibe.envs.image_wrappers import Crop, FrameStack, Grayscale, Invert, NormalizeImage, ResizeWithPad

C = 3  # RGB channels of PixelCartPole


def _check_obs_match_the_space(env, params, num_envs=2):
    """Steps ``vectorize(for_training(env))`` twice; every obs and final obs is in the declared space."""
    space = env.observation_space(params)
    vec = wrappers.vectorize(wrappers.for_training(env), num_envs)
    state, timestep = vec.reset(jax.random.PRNGKey(0), params)
    state, timestep = jax.jit(vec.step)(jax.random.PRNGKey(1), state, jnp.ones(num_envs, jnp.int32), params)
    for obs in (timestep.obs, timestep.info["final_obs"]):
        assert obs.shape == (num_envs, *space.shape) and obs.dtype == space.dtype
        assert all(bool(space.contains(o)) for o in obs)
    return timestep


def test_resize_grayscale_normalize_stack_update_the_space():
    base, params = pixel_cartpole.make(32, 48)
    resized = ResizeWithPad(base, 24, 24)
    assert resized.observation_space(params) == spaces.Image(24, 24, 3)
    gray = Grayscale(resized)
    assert gray.observation_space(params) == spaces.Image(24, 24, 1)
    normalized = NormalizeImage(gray)
    assert normalized.observation_space(params) == spaces.Image(24, 24, 1, dtype=np.float32)
    stacked = FrameStack(normalized, 4)
    assert stacked.observation_space(params) == spaces.Image(24, 24, 4, dtype=np.float32)
    timestep = _check_obs_match_the_space(stacked, params)
    obs = np.asarray(timestep.obs)
    np.testing.assert_array_equal(obs[:, :4], -1.0)  # 32 x 48 letterboxed into 24 x 24: 4 pad rows on top
    assert obs.max() == 1.0  # the white background


def test_each_wrapper_alone_matches_its_space():
    base, params = pixel_cartpole.make(32, 32)
    for env in (ResizeWithPad(base, 20, 30), Grayscale(base), NormalizeImage(base), FrameStack(base, 2)):
        _check_obs_match_the_space(env, params)
    resized_floats = ResizeWithPad(NormalizeImage(base), 16, 16)
    assert resized_floats.observation_space(params) == spaces.Image(16, 16, 3, dtype=np.float32)
    _check_obs_match_the_space(resized_floats, params)


def test_crop_keeps_the_window_of_every_frame_and_its_final_obs():
    base, params = pixel_cartpole.make(64, 64)
    # Rows 16..47 hold the cart and the whole pole at 64x64: the 32x64 render is exactly that window.
    env = FrameStack(Crop(base, 16, 0, 32, 64), 2)
    assert env.observation_space(params) == spaces.Image(32, 64, 6)
    timestep = _check_obs_match_the_space(env, params)
    full = np.asarray(pixel_cartpole.render(jnp.float32(0.3), jnp.float32(-0.1), 64, 64))
    window = np.asarray(Crop(base, 16, 0, 32, 64).observe(jnp.asarray(full)))
    np.testing.assert_array_equal(window, full[16:48])
    short = pixel_cartpole.render(jnp.float32(0.3), jnp.float32(-0.1), 32, 64)
    np.testing.assert_array_equal(window, np.asarray(short))
    assert (full[:16] == 255).all() and (full[48:] == 255).all()  # what the crop drops is background
    odd = Crop(NormalizeImage(base), 3, 5, 7, 11)  # float images, an odd window, leading batch axes
    batch = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, size=(2, 64, 64, 3)).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(odd.observe(batch)), np.asarray(batch)[:, 3:10, 5:16])
    assert odd.observation_space(params) == spaces.Image(7, 11, 3, dtype=np.float32)
    assert timestep.obs.shape == (2, 32, 64, 6)


def test_normalize_image_endpoints():
    base, params = pixel_cartpole.make(16, 16)
    env = NormalizeImage(base)
    obs = np.asarray(env.observe(jnp.array([[[0, 255, 51]]], jnp.uint8)))
    np.testing.assert_allclose(obs, [[[-1.0, 1.0, 51 / 255 * 2 - 1]]], rtol=1e-6)
    _, timestep = env.reset(jax.random.PRNGKey(0), params)
    assert timestep.obs.dtype == jnp.float32 and float(timestep.obs.max()) == 1.0 and float(timestep.obs.min()) == -1.0


def test_grayscale_of_the_rendered_frame_uses_bt601():
    base, params = pixel_cartpole.make(16, 16)
    _, timestep = base.reset(jax.random.PRNGKey(0), params)
    gray = np.asarray(Grayscale(base).observe(timestep.obs))
    rgb = np.asarray(timestep.obs, np.float64)
    np.testing.assert_array_equal(gray[..., 0], np.round(rgb @ [0.299, 0.587, 0.114]).astype(np.uint8))


def test_invert_turns_the_white_background_black_and_keeps_the_space():
    base, params = pixel_cartpole.make(16, 16)
    _, timestep = base.reset(jax.random.PRNGKey(0), params)
    inverted = Invert(base)
    assert inverted.observation_space(params) == base.observation_space(params)
    _, inverted_timestep = inverted.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(inverted_timestep.obs, 255 - np.asarray(timestep.obs))
    assert int(inverted_timestep.obs[0, 0].max()) == 0  # the corner is background
    floats = Invert(NormalizeImage(base))
    np.testing.assert_allclose(floats.observe(jnp.array([-1.0, 0.5])), [1.0, -0.5])
    minatar, minatar_params = gymnax_env.make("Breakout-MinAtar")
    _check_obs_match_the_space(Invert(minatar), minatar_params)  # bool frames stay bool
    _check_obs_match_the_space(FrameStack(Invert(ResizeWithPad(base, 8, 8)), 2), params)


def test_wrappers_refuse_spaces_they_cannot_handle():
    env, params = gymnax_env.make("CartPole-v1")
    with pytest.raises(ValueError, match="Grayscale needs an env with an Image observation space"):
        Grayscale(env).observation_space(params)
    with pytest.raises(ValueError, match="Invert needs an env with an Image observation space"):
        Invert(env).observation_space(params)
    minatar, minatar_params = gymnax_env.make("Breakout-MinAtar")
    with pytest.raises(ValueError, match="NormalizeImage maps uint8 pixels"):
        NormalizeImage(minatar).observation_space(minatar_params)
    with pytest.raises(ValueError, match=r"FrameStack\.num_frames must be a positive int, got 0"):
        FrameStack(env, 0)
    with pytest.raises(ValueError, match=r"ResizeWithPad\.width must be a positive int"):
        ResizeWithPad(env, 4, 0)
    with pytest.raises(ValueError, match="Crop needs an env with an Image observation space"):
        Crop(env, 0, 0, 1, 1).observation_space(params)
    with pytest.raises(ValueError, match=r"Crop\.top must be a non-negative int, got -1"):
        Crop(env, -1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"Crop\.width must be a positive int, got 0"):
        Crop(env, 0, 0, 1, 0)


def test_frame_stack_of_vectors_and_bool_images():
    env, params = gymnax_env.make("CartPole-v1")
    space = FrameStack(env, 3).observation_space(params)
    assert space.shape == (12,)
    np.testing.assert_array_equal(space.high, np.tile(env.observation_space(params).high, 3))
    _check_obs_match_the_space(FrameStack(env, 3), params)
    minatar, minatar_params = gymnax_env.make("Breakout-MinAtar")
    assert FrameStack(minatar, 2).observation_space(minatar_params) == spaces.Image(10, 10, 8, dtype=bool)
    _check_obs_match_the_space(FrameStack(minatar, 2), minatar_params)


def test_frame_stack_above_auto_reset_is_refused():
    env, params = pixel_cartpole.make(16, 16)
    with pytest.raises(ValueError, match=r"put FrameStack below the training wrappers: for_training\(FrameStack"):
        FrameStack(wrappers.for_training(env), 4).reset(jax.random.PRNGKey(0), params)


def _frames(stack: np.ndarray) -> list[np.ndarray]:
    """``[h, w, C * k]`` -> the k frames, oldest first."""
    return [stack[..., i * C : (i + 1) * C] for i in range(stack.shape[-1] // C)]


def test_frame_stack_never_leaks_frames_across_an_automatic_reset():
    """The training stack ``vectorize(for_training(FrameStack(env)), n)``: env 1 falls over, env 0 goes on."""
    base, params = pixel_cartpole.make(32, 32)
    vec = wrappers.vectorize(wrappers.for_training(FrameStack(base, 4)), num_envs=2)
    step = jax.jit(vec.step)
    action = jnp.ones(2, jnp.int32)
    state, first = vec.reset(jax.random.PRNGKey(0), params)
    for env in range(2):  # the first stack is 4 copies of the reset frame
        frames = _frames(np.asarray(first.obs[env]))
        assert all(np.array_equal(f, frames[0]) for f in frames)
    history = [np.asarray(first.obs)]
    for t in range(2):
        state, timestep = step(jax.random.PRNGKey(1 + t), state, action, params)
        assert not np.asarray(timestep.info["done"]).any()
        history.append(np.asarray(timestep.obs))
    # Tip env 1's pole: its episode terminates on the next step.
    cartpole = state.env_state.env_state
    tipped = cartpole.replace(theta=cartpole.theta.at[1].set(0.2), theta_dot=cartpole.theta_dot.at[1].set(2.0))
    state = dataclasses.replace(state, env_state=dataclasses.replace(state.env_state, env_state=tipped))
    state, timestep = step(jax.random.PRNGKey(9), state, action, params)
    np.testing.assert_array_equal(timestep.info["done"], [False, True])
    obs, final = np.asarray(timestep.obs), np.asarray(timestep.info["final_obs"])

    # Env 1's new stack holds only its reset frame: 4 copies of the picture of the new state.
    new_state = jax.tree.map(lambda x: x[1], state.env_state.env_state)
    reset_frame = np.asarray(base.render(new_state, params))
    assert all(np.array_equal(f, reset_frame) for f in _frames(obs[1]))
    # Its final observation holds only the finished episode's frames: the reset frame, the two
    # steps seen, and the terminal frame (pole at 0.2 rad and falling), none of the new episode.
    expected = _frames(history[0][1])[:1] + [_frames(h[1])[-1] for h in history[1:]]
    np.testing.assert_array_equal(np.concatenate(expected, -1), final[1][..., : 3 * C])
    terminal = _frames(final[1])[-1]
    assert not np.array_equal(terminal, reset_frame) and not np.array_equal(terminal, expected[-1])
    # Env 0 carries on: its stack slides by one frame, and obs equals final_obs.
    np.testing.assert_array_equal(obs[0][..., : 3 * C], history[-1][0][..., C:])
    np.testing.assert_array_equal(obs[0], final[0])

    # One step later env 1's stack is 3 reset frames and one new frame, still nothing of episode 1.
    state, timestep = step(jax.random.PRNGKey(10), state, action, params)
    frames = _frames(np.asarray(timestep.obs[1]))
    assert all(np.array_equal(f, reset_frame) for f in frames[:3])
    assert not any(np.array_equal(f, old) for f in frames for old in _frames(final[1]))


def test_frame_stack_composes_with_observation_normalization():
    base, params = pixel_cartpole.make(16, 16)
    env = normalize.NormalizeObservation(
        wrappers.vectorize(wrappers.for_training(FrameStack(NormalizeImage(base), 2)), num_envs=2)
    )
    assert env.observation_space(params) == spaces.Box(-10.0, 10.0, (16, 16, 6))
    state, timestep = env.reset(jax.random.PRNGKey(0), params)
    state, timestep = jax.jit(env.step)(jax.random.PRNGKey(1), state, jnp.zeros(2, jnp.int32), params)
    assert timestep.obs.shape == (2, 16, 16, 6) and timestep.info["final_obs"].shape == (2, 16, 16, 6)
    assert state.stats.mean.shape == (16, 16, 6) and np.isfinite(np.asarray(timestep.obs)).all()
