"""Tests for vibe.algorithms.dqn.dqn: collection, warm-up, the train_step contract, image observations.
The learning gate is in tests/learning_test.py."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.dqn import dqn
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.dqn.dqn import DQN
from vibe.envs import gymnax_env, wrappers
from vibe.envs.evaluate import evaluate
from vibe.networks.config import CNNConfig, EncoderConfig

SMALL = DQNConfig(
    num_envs=2,
    train_frequency=3,
    gradient_steps=2,
    total_timesteps=60,
    buffer_size=32,
    batch_size=4,
    learning_starts=12,
    target_update_interval=3,
    tau=1.0,  # a hard copy every 3 gradient steps
    end_e=0.05,
    exploration_fraction=0.5,
    encoder=EncoderConfig(hidden_sizes=(16,), activation="relu"),
)


# Episodes are cut after 3 steps (CartPole cannot fall that fast): every 3rd step is a truncation.
MAX_STEPS = 3


@functools.cache
def _algo() -> DQN:
    env, params = gymnax_env.make("CartPole-v1")
    return DQN.make(SMALL, env, params.replace(max_steps_in_episode=MAX_STEPS), env_id="CartPole-v1")


def _init(seed: int = 0) -> dqn.DQNState:
    return _algo().init(jax.random.PRNGKey(seed))


@functools.cache
def _step():
    """The jitted, donating train_step all tests share: one compile, and a trace count that spans them."""
    return jax.jit(chex.assert_max_traces(_algo().train_step, n=1), donate_argnums=0)


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


def test_make_builds_the_training_envs_and_needs_discrete_actions():
    algo = _algo()
    # The plain env for evaluation; auto-reset and episode statistics above the vectorised env for training.
    assert isinstance(algo.env, gymnax_env.GymnaxEnv)
    assert isinstance(algo.vec_env, wrappers.EpisodeStats) and isinstance(algo.vec_env.env, wrappers.AutoReset)
    assert isinstance(algo.vec_env.env.env, wrappers.VecEnv) and algo.vec_env.env.env.num_envs == 2
    assert isinstance(_init().env_state, wrappers.EpisodeStatsState)
    env, params = gymnax_env.make("Pendulum-v1")
    with pytest.raises(ValueError, match=r"DQN supports discrete actions only; Pendulum-v1 has action space Box"):
        DQN.make(SMALL, env, params, env_id="Pendulum-v1")


def test_collect_stores_the_final_obs_and_the_terminated_flag():
    algo, state = _algo(), _init()
    new_state, items, episodes = jax.jit(lambda s, k: dqn.collect(algo, s, k))(state, jax.random.PRNGKey(1))
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
    assert int(state.gradient_steps) == 0 and float(metrics.per_update["loss/q"]) == 0.0
    chex.assert_trees_all_equal(state.params, initial_params)
    assert int(state.buffer_state.current_index) == 6
    state, metrics = step(state)  # 12 env steps: learns
    assert int(state.gradient_steps) == 2 and float(metrics.per_update["loss/q"]) > 0.0
    np.testing.assert_allclose(metrics.per_update["epsilon"], 1.0 - 0.95 * 6 / 30, rtol=1e-6)  # 6 of 0.5 * 60
    state, _ = step(state)  # gradient steps 3 and 4; the target was copied at 3 only
    assert int(state.gradient_steps) == 4
    first_kernel = lambda params: params["params"]["Encoder_0"]["MLP_0"]["Dense_0"]["kernel"]  # noqa: E731
    assert not np.array_equal(first_kernel(state.params), first_kernel(state.target_params))
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
    assert set(metrics.per_update) == {"loss/q", "q/mean", "epsilon"}
    assert set(metrics.episode_sums) == {"return", "length"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in jax.tree.leaves(metrics))
    # 2 envs x 3 steps per train_step with 3-step episodes: 2 episodes of return 3 per train_step.
    assert [float(m.episode_count) for m in totals] == [2.0] * 4
    assert float(metrics.episode_sums["return"]) == 6.0 and float(metrics.episode_sums["length"]) == 6.0
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


def test_algorithm_follows_the_runner_contract():
    env, params = gymnax_env.make("CartPole-v1")
    algo = DQN.make(SMALL, env, params)
    assert algo.name == "dqn" and algo.num_updates == 10 and algo.steps_per_update == 6
    state = algo.init(jax.random.PRNGKey(0))
    assert _signature(jax.eval_shape(algo.train_step, state)[0]) == _signature(state)
    obs = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    assert algo.obs_stats(state) is None
    actions = algo.act(state.params, algo.policy_input(None, obs), jax.random.PRNGKey(0), greedy=True)
    q = np.asarray(dqn.q_values(algo, state.params, obs))
    assert q.shape == (5, 2)
    np.testing.assert_array_equal(actions, np.argmax(q, -1))
    assert actions.dtype == jnp.int32
    assert algo.obs_stats(state) is None


def test_exploring_act_takes_random_actions_at_rate_end_e():
    env, params = gymnax_env.make("CartPole-v1")
    algo = DQN.make(SMALL, env, params)
    state = algo.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((4000, 4))  # one observation: the greedy action is the same for every row
    greedy = algo.act(state.params, obs, jax.random.PRNGKey(0), greedy=True)
    explored = algo.act(state.params, obs, jax.random.PRNGKey(1), greedy=False)
    assert explored.dtype == jnp.int32
    # A random action differs from the greedy one half the time: rate end_e / 2 = 0.025 (about 100 of 4000).
    assert 0.015 < float(jnp.mean(explored != greedy)) < 0.035


def test_roles_split_the_envs_and_shard_the_rest():
    state = _init()
    roles = _algo().roles(state)
    assert roles.env_state == "batch" and roles.obs == "batch"
    for name in ("params", "target_params", "opt_state", "buffer_state", "key", "step", "env_steps"):
        assert getattr(roles, name) == "fsdp", name


# MinAtar Breakout observes bool [10, 10, 4] planes; a small CNN reads them.
IMAGES = DQNConfig(
    num_envs=2,
    total_timesteps=64,
    buffer_size=16,
    batch_size=4,
    learning_starts=4,
    encoder=EncoderConfig(kind="cnn", hidden_sizes=(16,), activation="relu", cnn=CNNConfig(channels=(4,))),
)


def test_image_observations_stay_compact_in_the_buffer_and_learn():
    env, params = gymnax_env.make("Breakout-MinAtar")
    algo = DQN.make(IMAGES, env, params, env_id="Breakout-MinAtar")
    state = algo.init(jax.random.PRNGKey(0))
    assert state.obs.shape == (2, 10, 10, 4) and state.obs.dtype == jnp.bool_
    # 1 byte a pixel in the replay buffer: the env's dtype, not float32.
    assert state.buffer_state.experience.obs.dtype == jnp.bool_
    assert state.buffer_state.experience.next_obs.dtype == jnp.bool_
    step = jax.jit(chex.assert_max_traces(algo.train_step, n=1), donate_argnums=0)
    signature = _signature(state)
    for _ in range(3):  # 2, 4 (learns), 6 env steps
        state, metrics = step(state)
    assert _signature(state) == signature
    assert int(state.gradient_steps) == 2 and float(metrics.per_update["loss/q"]) > 0.0
    # A bool observation is read as 0/1 floats: Q of the stored obs equals Q of its float32 copy.
    obs = state.buffer_state.experience.obs[0, :4]
    np.testing.assert_allclose(
        dqn.q_values(algo, state.params, obs), dqn.q_values(algo, state.params, obs.astype(jnp.float32)), rtol=1e-6
    )


def test_make_rejects_a_cnn_on_flat_observations():
    env, params = gymnax_env.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"env CartPole-v1 observes .*--algo\.encoder\.kind mlp"):
        DQN.make(IMAGES, env, params, env_id="CartPole-v1")


def test_evaluate_runs_the_greedy_policy_on_the_plain_env():
    env, params = gymnax_env.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=20)
    algo = DQN.make(SMALL, env, params)
    state = algo.init(jax.random.PRNGKey(0))

    def argmax_q(obs, key):
        return jnp.argmax(dqn.q_values(algo, state.params, obs), axis=-1).astype(jnp.int32)

    key = jax.random.PRNGKey(5)
    returns = jax.jit(algo.evaluate, static_argnums=2)(state, key, 3)
    np.testing.assert_array_equal(returns, evaluate(env, params, argmax_q, key, num_episodes=3))
