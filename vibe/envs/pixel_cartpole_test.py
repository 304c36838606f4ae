"""Tests for vibe.envs.pixel_cartpole: gymnax's CartPole dynamics, a deterministic picture of the state."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.envs import gymnax_env, pixel_cartpole, spaces, wrappers


def _state(env, params, **fields):
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    return state.replace(**{k: jnp.float32(v) for k, v in fields.items()})


def test_spaces_and_observation_dtype():
    env, params = pixel_cartpole.make()
    assert env.observation_space(params) == spaces.Image(64, 64, 3)
    assert env.action_space(params) == spaces.Discrete(2)
    _, timestep = jax.jit(env.reset)(jax.random.PRNGKey(0), params)
    assert timestep.obs.shape == (64, 64, 3) and timestep.obs.dtype == jnp.uint8
    assert bool(env.observation_space(params).contains(timestep.obs))
    assert pixel_cartpole.PixelCartPole(32, 48).observation_space(params) == spaces.Image(32, 48, 3)
    assert pixel_cartpole.PixelCartPole() == pixel_cartpole.PixelCartPole(64, 64)  # usable as a static jit argument


def test_golden_image_of_a_fixed_state():
    env, params = pixel_cartpole.make()
    # On the CPU backend whatever the machine: an accelerator may round an antialiased edge pixel differently.
    with jax.default_device(jax.devices("cpu")[0]):
        image = np.asarray(env.render(_state(env, params, x=0.5, theta=0.1), params))
    # Pinned from this renderer (CPU); a change here means the picture changed: check it on purpose.
    positions = np.arange(image.size, dtype=np.int64).reshape(image.shape)
    assert int(image.astype(np.int64).sum()) == 3113446
    assert int((image.astype(np.int64) * positions).sum()) == 19115954357  # moves with any translation
    assert hashlib.sha256(image.tobytes()).hexdigest()[:16] == "89d2599300e98958"
    # Rendering is a pure function of the state: the same state gives the same bytes, jitted or not.
    with jax.default_device(jax.devices("cpu")[0]):
        again = jax.jit(env.render)(_state(env, params, x=0.5, theta=0.1), params)
    np.testing.assert_array_equal(np.asarray(again), image)


def test_the_picture_shows_cart_and_pole_where_the_state_says():
    env, params = pixel_cartpole.make()
    image = np.asarray(env.render(_state(env, params, x=0.0, theta=0.0), params))
    cart_cols = np.nonzero((image == 0).all(axis=-1).any(axis=0))[0]  # pure black: the cart
    assert abs(cart_cols.mean() - 31.5) < 1.0  # centred at x = 0
    left = np.asarray(env.render(_state(env, params, x=-1.2, theta=0.0), params))
    left_cols = np.nonzero((left == 0).all(axis=-1).any(axis=0))[0]
    assert abs(left_cols.mean() - (31.5 - 1.2 * 64 / 4.8)) < 1.0  # 64 px show 4.8 m
    # An upright pole is brown pixels above the cart, a leaning one is shifted to its side.
    brown = (np.abs(image.astype(int) - [202, 152, 101]).sum(-1) < 30).nonzero()
    assert brown[0].min() < 30 and abs(brown[1].mean() - 31.5) < 1.0
    leaning = np.asarray(env.render(_state(env, params, x=0.0, theta=0.2), params))
    brown = (np.abs(leaning.astype(int) - [202, 152, 101]).sum(-1) < 30).nonzero()
    assert brown[1].mean() > 32.0


def test_different_states_render_different_images():
    env, params = pixel_cartpole.make()
    states = [dict(x=0.0, theta=0.0), dict(x=0.05, theta=0.0), dict(x=0.0, theta=0.02), dict(x=-1.0, theta=-0.1)]
    images = [np.asarray(env.render(_state(env, params, **s), params)) for s in states]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.any(images[i] != images[j]), (states[i], states[j])  # even sub-pixel moves show
    # Velocities are not drawn: only positions matter.
    a = env.render(_state(env, params, x=0.3, theta=0.05, x_dot=1.0), params)
    b = env.render(_state(env, params, x=0.3, theta=0.05, x_dot=-1.0, theta_dot=2.0), params)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dynamics_equal_gymnax_cartpole_for_the_same_actions():
    env, params = pixel_cartpole.make()
    reference = gymnax_env.GymnaxEnv("CartPole-v1")
    key = jax.random.PRNGKey(7)
    state, _ = env.reset(key, params)
    ref_state, _ = reference.reset(key, params)
    step, ref_step = jax.jit(env.step), jax.jit(reference.step)
    for t, action in enumerate([1, 1, 0, 1, 0, 0, 0, 1, 1, 0]):
        step_key = jax.random.PRNGKey(100 + t)
        state, timestep = step(step_key, state, jnp.int32(action), params)
        ref_state, ref = ref_step(step_key, ref_state, jnp.int32(action), params)
        for leaf, ref_leaf in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
            np.testing.assert_array_equal(leaf, ref_leaf)
        assert float(timestep.reward) == float(ref.reward)
        assert bool(timestep.terminated) == bool(ref.terminated)
        np.testing.assert_array_equal(np.asarray(timestep.obs), np.asarray(env.render(state, params)))


def test_truncates_at_500_steps_and_terminates_when_the_pole_falls():
    env, params = pixel_cartpole.make()
    assert params.max_steps_in_episode == 500
    state = _state(env, params).replace(time=jnp.int32(498))
    state, timestep = env.step(jax.random.PRNGKey(1), state, jnp.int32(0), params)
    assert not bool(timestep.truncated)
    state, timestep = env.step(jax.random.PRNGKey(2), state, jnp.int32(1), params)
    assert bool(timestep.truncated) and not bool(timestep.terminated) and int(state.time) == 500
    falling = _state(env, params, theta=0.2, theta_dot=2.0)
    _, timestep = env.step(jax.random.PRNGKey(3), falling, jnp.int32(1), params)
    assert bool(timestep.terminated) and not bool(timestep.truncated)


@pytest.mark.parametrize(("height", "width"), [(16, 16), (84, 84), (40, 96)])
def test_other_sizes_vectorise_under_the_training_wrappers(height, width):
    env = pixel_cartpole.PixelCartPole(height, width)
    params = env.default_params
    vec = wrappers.vectorize(wrappers.for_training(env), num_envs=2)
    state, timestep = vec.reset(jax.random.PRNGKey(0), params)
    state, timestep = jax.jit(vec.step)(jax.random.PRNGKey(1), state, jnp.zeros(2, jnp.int32), params)
    assert timestep.obs.shape == (2, height, width, 3) and timestep.obs.dtype == jnp.uint8
    assert timestep.info["final_obs"].shape == (2, height, width, 3)
    dark = np.asarray(timestep.obs).max(axis=-1) < 100
    assert dark.reshape(2, -1).any(axis=1).all()  # each image shows the (black) cart


def test_rejects_tiny_images():
    with pytest.raises(ValueError, match=r"PixelCartPole\.height must be an int >= 16, got 8"):
        pixel_cartpole.PixelCartPole(8, 64)
