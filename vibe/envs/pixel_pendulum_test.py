"""Tests for vibe.envs.pixel_pendulum: gymnax's Pendulum dynamics, a deterministic picture of the angle."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from vibe.envs import gymnax_env, pixel_pendulum, spaces, wrappers


def _state(env, params, **fields):
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    return state.replace(**{k: jnp.float32(v) for k, v in fields.items()})


def test_spaces_and_golden_image():
    env, params = pixel_pendulum.make()
    assert env.observation_space(params) == spaces.Image(64, 64, 3)
    assert env.action_space(params) == spaces.Box(-2.0, 2.0, (1,))
    # On the CPU backend whatever the machine: an accelerator may round an antialiased edge pixel differently.
    with jax.default_device(jax.devices("cpu")[0]):
        image = np.asarray(env.render(_state(env, params, theta=0.7), params))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    # Pinned from this renderer (CPU); a change here means the picture changed: check it on purpose.
    positions = np.arange(image.size, dtype=np.int64).reshape(image.shape)
    assert int(image.astype(np.int64).sum()) == 3112228
    assert int((image.astype(np.int64) * positions).sum()) == 19141714197
    assert hashlib.sha256(image.tobytes()).hexdigest()[:16] == "409164b6afc9fd56"


def test_the_rod_points_where_theta_says():
    env, params = pixel_pendulum.make()

    def red_centroid(theta):
        image = np.asarray(env.render(_state(env, params, theta=theta), params)).astype(int)
        rows, cols = (np.abs(image - [204, 77, 77]).sum(-1) < 40).nonzero()
        return rows.mean(), cols.mean()

    up, left, down = red_centroid(0.0), red_centroid(np.pi / 2), red_centroid(np.pi)
    assert up[0] < 30 and abs(up[1] - 31.5) < 1  # above the centre
    assert left[1] < 30 and abs(left[0] - 31.5) < 1  # positive theta turns counter-clockwise
    assert down[0] > 33
    images = [np.asarray(env.render(_state(env, params, theta=t), params)) for t in (0.0, 0.01, 1.0)]
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])


def test_dynamics_equal_gymnax_pendulum_and_truncate_at_200():
    env, params = pixel_pendulum.make(32, 32)
    reference = gymnax_env.GymnaxEnv("Pendulum-v1")
    key = jax.random.PRNGKey(3)
    state, _ = env.reset(key, params)
    ref_state, _ = reference.reset(key, params)
    for t, torque in enumerate([2.0, -1.0, 0.5, 0.0, -2.0]):
        action = jnp.array([torque], jnp.float32)
        state, timestep = env.step(jax.random.PRNGKey(t), state, action, params)
        ref_state, ref = reference.step(jax.random.PRNGKey(t), ref_state, action, params)
        for leaf, ref_leaf in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
            np.testing.assert_array_equal(leaf, ref_leaf)
        assert float(timestep.reward) == float(ref.reward)
    assert params.max_steps_in_episode == 200
    _, timestep = env.step(key, state.replace(time=jnp.int32(199)), jnp.zeros(1), params)
    assert bool(timestep.truncated) and not bool(timestep.terminated)


def test_vectorises_under_the_training_wrappers():
    env, params = pixel_pendulum.make(16, 24)
    vec = wrappers.vectorize(wrappers.for_training(env), num_envs=2)
    state, _ = vec.reset(jax.random.PRNGKey(0), params)
    _, timestep = jax.jit(vec.step)(jax.random.PRNGKey(1), state, jnp.zeros((2, 1)), params)
    assert timestep.obs.shape == (2, 16, 24, 3) and timestep.obs.dtype == jnp.uint8
