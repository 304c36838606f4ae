"""Tests for vibe.envs.gymnax_env: no auto-reset, terminated vs truncated, real space bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.envs import gymnax_env, spaces, wrappers


def _cartpole(max_steps: int = 500):
    env, params = gymnax_env.make("CartPole-v1")
    return env, params.replace(max_steps_in_episode=max_steps)


@pytest.mark.parametrize("name", gymnax_env.CLASSIC_CONTROL)
def test_classic_control_envs_reset_and_step_under_jit_and_vmap(name):
    env, params = gymnax_env.make(name)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state, timestep = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    actions = jax.vmap(env.action_space(params).sample)(keys)
    state, timestep = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))(keys, state, actions, params)
    assert timestep.obs.shape == (3, *env.observation_space(params).shape)
    assert timestep.reward.dtype == jnp.float32 and timestep.reward.shape == (3,)
    assert timestep.terminated.dtype == jnp.bool_ and timestep.truncated.dtype == jnp.bool_


def test_spaces_keep_the_real_bounds():
    env, params = gymnax_env.make("Pendulum-v1")
    action_space = env.action_space(params)
    assert isinstance(action_space, spaces.Box)
    np.testing.assert_array_equal(action_space.low, [-2.0])
    np.testing.assert_array_equal(action_space.high, [2.0])
    np.testing.assert_allclose(env.observation_space(params).high, [1.0, 1.0, 8.0])
    env, params = gymnax_env.make("MountainCarContinuous-v0")
    np.testing.assert_array_equal(env.action_space(params).high, [1.0])
    env, params = gymnax_env.make("CartPole-v1")
    assert env.action_space(params) == spaces.Discrete(2)
    np.testing.assert_allclose(
        env.observation_space(params).high[[0, 2]], [4.8, 2 * 12 * 2 * np.pi / 360], rtol=1e-6
    )  # 2x the limits


def test_truncation_is_reported_without_auto_reset():
    env, params = _cartpole(max_steps=3)
    key = jax.random.PRNGKey(0)
    state, timestep = env.reset(key, params)
    gym_env = env.gymnax_env
    for t in range(1, 4):
        expected_obs, _, _, _, _ = gym_env.step_env(key, state, 1, params)
        state, timestep = env.step(key, state, jnp.int32(1), params)
        assert bool(timestep.truncated) == (t == 3)
        assert not bool(timestep.terminated)
        # The adapter never resets: the obs is what step_env produced, time keeps counting.
        np.testing.assert_array_equal(timestep.obs, expected_obs)
        assert int(state.time) == t


def test_termination_is_not_truncation():
    env, params = _cartpole()
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    # The pole at 0.2 rad and falling crosses the 12 degree (0.209 rad) threshold in one step.
    state = state.replace(theta=jnp.float32(0.2), theta_dot=jnp.float32(2.0))
    _, timestep = env.step(jax.random.PRNGKey(1), state, jnp.int32(1), params)
    assert bool(timestep.terminated)
    assert not bool(timestep.truncated)
    assert float(timestep.obs[2]) > 0.209  # the terminal observation, not a reset one


def test_reset_state_is_strongly_typed():
    env, params = _cartpole()
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    assert not any(leaf.weak_type for leaf in jax.tree.leaves(state))


def test_unknown_name_suggests_a_close_one():
    with pytest.raises(ValueError, match="Did you mean CartPole-v1"):
        gymnax_env.GymnaxEnv("CartPole-v2")


def test_adapters_with_the_same_name_are_equal():
    assert gymnax_env.GymnaxEnv("CartPole-v1") == gymnax_env.GymnaxEnv("CartPole-v1")
    assert hash(gymnax_env.GymnaxEnv("Acrobot-v1")) == hash(gymnax_env.GymnaxEnv("Acrobot-v1"))


@pytest.mark.parametrize(
    ("name", "channels", "num_actions"),
    [("Breakout-MinAtar", 4, 3), ("SpaceInvaders-MinAtar", 6, 4), ("Asterix-MinAtar", 4, 5), ("Freeway-MinAtar", 7, 3)],
)
def test_minatar_observations_are_the_declared_bool_images(name, channels, num_actions):
    env, params = gymnax_env.make(name)
    space = env.observation_space(params)
    assert space == spaces.Image(10, 10, channels, dtype=bool)
    assert env.action_space(params) == spaces.Discrete(num_actions)
    vec = wrappers.vectorize(wrappers.for_training(env), num_envs=2)
    state, timestep = vec.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(vec.step)
    for t in range(3):
        state, timestep = step(jax.random.PRNGKey(t), state, jnp.ones(2, jnp.int32), params)
    for obs in (timestep.obs, timestep.info["final_obs"]):
        assert obs.shape == (2, 10, 10, channels) and obs.dtype == jnp.bool_  # 1 byte per pixel
        assert all(bool(space.contains(o)) for o in obs)
    assert np.asarray(timestep.obs).any()  # the frame shows something
    # The same pixels gymnax returns as float32 0/1.
    expected, _ = env.gymnax_env.reset_env(jax.random.PRNGKey(1), params)
    _, reset = env.reset(jax.random.PRNGKey(1), params)
    np.testing.assert_array_equal(np.asarray(reset.obs, np.float32), expected)
