"""Tests for vibe.algorithms.ppo.ppo: rollout wiring, train_step contract, learning on CartPole."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.ppo import ppo
from vibe.algorithms.ppo.config import PPOConfig
from vibe.envs import gymnax_env, wrappers
from vibe.envs.evaluate import evaluate

SMALL = PPOConfig(num_envs=2, num_steps=6, num_minibatches=2, update_epochs=2, hidden_sizes=(16,), total_timesteps=1200)


def _setup(config: PPOConfig, max_steps: int = 500):
    env, params = gymnax_env.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=max_steps)
    return wrappers.for_training(env), params


def test_init_state_is_a_donatable_array_pytree():
    env, params = _setup(SMALL)
    state = ppo.init(SMALL, env, params, jax.random.PRNGKey(0))
    assert state.obs.shape == (2, 4)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
    assert state.step.dtype == jnp.int32 and state.env_steps.dtype == jnp.int32
    # A runner donates the state; every leaf must be its own buffer.
    out = jax.jit(lambda s: s, donate_argnums=0)(state)
    assert int(out.step) == 0


def test_init_requires_the_training_wrappers():
    env, params = gymnax_env.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"wrappers\.for_training"):
        ppo.init(SMALL, env, params, jax.random.PRNGKey(0))


def test_init_rejects_continuous_actions():
    env, params = gymnax_env.make("Pendulum-v1")
    with pytest.raises(ValueError, match="discrete actions only"):
        ppo.init(SMALL, wrappers.for_training(env), params, jax.random.PRNGKey(0))


def test_rollout_next_obs_is_the_final_obs_on_episode_ends():
    env, params = _setup(SMALL, max_steps=3)
    state = ppo.init(SMALL, env, params, jax.random.PRNGKey(0))
    network = ppo.make_network(SMALL, env, params)
    new_state, traj, episodes = jax.jit(functools.partial(ppo.collect_rollout, SMALL, env, params, network))(state)
    assert traj.obs.shape == (6, 2, 4) and traj.action.shape == (6, 2) and traj.value.shape == (6, 2)
    truncated = np.asarray(traj.truncated)
    # Episodes are cut every 3 steps and CartPole cannot fall that fast.
    np.testing.assert_array_equal(truncated, np.array([[0, 0], [0, 0], [1, 1]] * 2, bool))
    assert not np.asarray(traj.terminated).any()
    obs, next_obs = np.asarray(traj.obs), np.asarray(traj.next_obs)
    np.testing.assert_array_equal(next_obs[:2], obs[1:3])  # within an episode next_obs is the next obs
    assert not np.allclose(next_obs[2], obs[3])  # at the cut it is the final obs, not the reset obs
    assert not np.allclose(np.asarray(new_state.obs), next_obs[5])  # the envs were reset after the last cut
    np.testing.assert_array_equal(np.asarray(episodes["done"]), truncated)
    assert int(new_state.env_steps) == 12
    # Values come from the current critic.
    values = ppo.state_values(network, state.params, traj.obs)
    np.testing.assert_allclose(traj.value, values, rtol=1e-6)


def test_train_step_metrics_and_single_trace():
    env, params = _setup(SMALL, max_steps=3)
    state = ppo.init(SMALL, env, params, jax.random.PRNGKey(0))
    step = chex.assert_max_traces(ppo.make_train_step(SMALL, env, params), n=1)
    step = jax.jit(step, donate_argnums=0)
    old_params = jax.tree.map(np.asarray, state.params)
    state, metrics = step(state)
    state, metrics = step(state)
    assert set(metrics) == {
        "loss/total",
        "loss/policy",
        "loss/value",
        "loss/entropy",
        "loss/approx_kl",
        "episode/return_sum",
        "episode/length_sum",
        "episode/count",
    }
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())
    # 2 envs x 6 steps with 3-step episodes: 4 episodes of return 3 each.
    assert float(metrics["episode/count"]) == 4.0
    assert float(metrics["episode/return_sum"]) == 12.0
    assert float(metrics["episode/length_sum"]) == 12.0
    assert int(state.step) == 2 and int(state.env_steps) == 24
    moved = jax.tree.map(lambda a, b: np.abs(a - np.asarray(b)).max(), old_params, state.params)
    assert max(jax.tree.leaves(moved)) > 0.0


def test_scanned_train_steps_are_deterministic():
    env, params = _setup(SMALL)
    step = ppo.make_train_step(SMALL, env, params)
    chunk = jax.jit(lambda s: jax.lax.scan(lambda s, _: step(s), s, None, length=3))
    a, metrics_a = chunk(ppo.init(SMALL, env, params, jax.random.PRNGKey(1)))
    b, _ = chunk(ppo.init(SMALL, env, params, jax.random.PRNGKey(1)))
    assert metrics_a["loss/total"].shape == (3,)
    chex.assert_trees_all_equal(a, b)
    c, _ = chunk(ppo.init(SMALL, env, params, jax.random.PRNGKey(2)))
    assert not np.array_equal(np.asarray(c.obs), np.asarray(a.obs))


def test_act_greedy_is_argmax():
    env, params = _setup(SMALL)
    network = ppo.make_network(SMALL, env, params)
    state = ppo.init(SMALL, env, params, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    logits = ppo.policy_logits(network, state.params, obs)
    greedy = ppo.act(network, state.params, obs, jax.random.PRNGKey(0), greedy=True)
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(logits), -1))
    sampled = ppo.act(network, state.params, obs, jax.random.PRNGKey(0), greedy=False)
    assert sampled.shape == (5,) and sampled.dtype == jnp.int32


@pytest.mark.learning
def test_ppo_solves_cartpole_with_the_default_config():
    config = PPOConfig()  # PureJaxRL's hyper-parameters, 500k steps, seed 0
    base_env, params = gymnax_env.make("CartPole-v1")
    env = wrappers.for_training(base_env)
    step = ppo.make_train_step(config, env, params)
    train = jax.jit(lambda s: jax.lax.scan(lambda s, _: step(s), s, None, length=config.num_updates))
    state, _ = train(ppo.init(config, env, params, jax.random.PRNGKey(0)))
    network = ppo.make_network(config, env, params)
    policy = lambda obs, key: ppo.act(network, state.params, obs, key, greedy=True)  # noqa: E731
    returns = evaluate(base_env, params, policy, jax.random.PRNGKey(123), num_episodes=32)
    assert float(jnp.mean(returns)) >= 475.0, f"greedy returns {np.asarray(returns)}"
