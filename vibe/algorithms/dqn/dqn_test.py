"""Tests for vibe.algorithms.dqn.dqn and agent: collection, warm-up, train_step contract, learning on CartPole."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.dqn import dqn
from vibe.algorithms.dqn.agent import DQN
from vibe.algorithms.dqn.config import DQNConfig
from vibe.envs import gymnax_env, wrappers
from vibe.envs.evaluate import evaluate

SMALL = DQNConfig(
    num_envs=2,
    train_frequency=3,
    gradient_steps=2,
    total_timesteps=60,
    buffer_size=32,
    batch_size=4,
    learning_starts=12,
    target_update_interval=3,
    end_e=0.05,
    exploration_fraction=0.5,
    hidden_sizes=(16,),
)


# Episodes are cut after 3 steps (CartPole cannot fall that fast): every 3rd step is a truncation.
MAX_STEPS = 3


def _setup():
    env, params = gymnax_env.make("CartPole-v1")
    return wrappers.for_training(env), params.replace(max_steps_in_episode=MAX_STEPS)


def _init(seed: int = 0) -> dqn.DQNState:
    env, params = _setup()
    return dqn.init(SMALL, env, params, jax.random.PRNGKey(seed))


@functools.cache
def _step():
    """The jitted, donating train_step all tests share: one compile, and a trace count that spans them."""
    env, params = _setup()
    return jax.jit(chex.assert_max_traces(dqn.make_train_step(SMALL, env, params), n=1), donate_argnums=0)


def _signature(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), tree)


def test_init_state_is_a_donatable_array_pytree():
    state = _init()
    assert state.obs.shape == (2, 4)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
    assert state.buffer_state.experience.obs.shape == (1, 32, 4)
    chex.assert_trees_all_equal(state.params, state.target_params)
    out = jax.jit(lambda s: s, donate_argnums=0)(state)  # every leaf its own buffer
    assert int(out.step) == 0


def test_init_requires_the_training_wrappers_and_discrete_actions():
    env, params = gymnax_env.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"wrappers\.for_training"):
        dqn.init(SMALL, env, params, jax.random.PRNGKey(0))
    env, params = gymnax_env.make("Pendulum-v1")
    with pytest.raises(ValueError, match="discrete actions only"):
        dqn.init(SMALL, wrappers.for_training(env), params, jax.random.PRNGKey(0))


def test_collect_stores_the_final_obs_and_the_terminated_flag():
    env, params = _setup()
    state = _init()
    network = dqn.make_network(SMALL, env, params)
    new_state, items, episodes = jax.jit(lambda s, k: dqn.collect(SMALL, env, params, network, s, k))(
        state, jax.random.PRNGKey(1)
    )
    assert items.obs.shape == (6, 4) and items.action.shape == (6,) and items.action.dtype == jnp.int32
    obs, next_obs = np.asarray(items.obs).reshape(3, 2, 4), np.asarray(items.next_obs).reshape(3, 2, 4)
    np.testing.assert_array_equal(obs[0], np.asarray(state.obs))
    np.testing.assert_array_equal(next_obs[:2], obs[1:])  # within an episode next_obs is the next obs
    # The 3rd step truncates: not terminated, so the target will bootstrap from the stored next_obs,
    # which is the episode's final observation, not the observation after the auto-reset.
    assert not np.asarray(items.terminated).any()
    np.testing.assert_array_equal(np.asarray(episodes["done"]), [[0, 0], [0, 0], [1, 1]])
    assert not np.allclose(next_obs[2], np.asarray(new_state.obs))
    assert int(new_state.env_steps) == 6


def test_warm_up_skips_learning_then_learns_and_updates_the_target():
    step = _step()
    initial_params = _init().params
    state, metrics = step(_init())  # 6 env steps < learning_starts = 12
    assert int(state.gradient_steps) == 0 and float(metrics["loss/q"]) == 0.0
    chex.assert_trees_all_equal(state.params, initial_params)
    assert int(state.buffer_state.current_index) == 6
    state, metrics = step(state)  # 12 env steps: learns
    assert int(state.gradient_steps) == 2 and float(metrics["loss/q"]) > 0.0
    np.testing.assert_allclose(metrics["epsilon"], 1.0 - 0.95 * 6 / 30, rtol=1e-6)  # 6 of 0.5 * 60 steps
    state, _ = step(state)  # gradient steps 3 and 4; the target was copied at 3 only
    assert int(state.gradient_steps) == 4
    assert not np.array_equal(
        state.params["params"]["Dense_0"]["kernel"], state.target_params["params"]["Dense_0"]["kernel"]
    )
    state, _ = step(state)  # steps 5 and 6: copied at 6, the last one
    chex.assert_trees_all_equal(state.params, state.target_params)


def test_train_step_keeps_the_state_signature_and_never_retraces():
    state = _init()
    signature = _signature(state)
    totals = []
    for _ in range(4):  # across the end of the warm-up
        state, metrics = _step()(state)  # assert_max_traces(n=1) fails on a second trace
        totals.append(metrics)
        assert _signature(state) == signature
    assert set(metrics) == {"loss/q", "q/mean", "epsilon", "episode/return_sum", "episode/length_sum", "episode/count"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())
    # 2 envs x 3 steps per train_step with 3-step episodes: 2 episodes of return 3 per train_step.
    assert [float(m["episode/count"]) for m in totals] == [2.0] * 4
    assert float(metrics["episode/return_sum"]) == 6.0 and float(metrics["episode/length_sum"]) == 6.0
    assert int(state.step) == 4 and int(state.env_steps) == 24 and int(state.gradient_steps) == 6


def test_train_steps_are_deterministic():
    def run(seed):
        state = _init(seed)
        for _ in range(3):
            state, _ = _step()(state)
        return state

    a, b, c = run(1), run(1), run(2)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(np.asarray(c.obs), np.asarray(a.obs))


def test_agent_follows_the_runner_contract():
    env, params = gymnax_env.make("CartPole-v1")
    algo = DQN(SMALL, env, params)
    assert algo.name == "dqn" and algo.num_updates == 10 and algo.steps_per_update == 6
    state = algo.init(jax.random.PRNGKey(0))
    assert _signature(jax.eval_shape(algo.train_step, state)[0]) == _signature(state)
    obs = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    actions = algo.greedy_policy(state)(obs, jax.random.PRNGKey(0))
    network = dqn.make_network(SMALL, env, params)
    np.testing.assert_array_equal(actions, np.argmax(np.asarray(network.apply(state.params, obs)), -1))
    assert actions.dtype == jnp.int32


@pytest.mark.learning
def test_dqn_solves_cartpole_with_the_default_config():
    config = DQNConfig()  # 100k env steps
    env, params = gymnax_env.make("CartPole-v1")
    algo = DQN(config, env, params)
    train = jax.jit(lambda s: jax.lax.fori_loop(0, algo.num_updates, lambda _, s: algo.train_step(s)[0], s))
    state = train(algo.init(jax.random.PRNGKey(0)))
    assert int(state.env_steps) == config.total_timesteps
    returns = evaluate(env, params, algo.greedy_policy(state), jax.random.PRNGKey(123), num_episodes=32)
    assert float(jnp.mean(returns)) >= 475.0, f"greedy returns {np.asarray(returns)}"
