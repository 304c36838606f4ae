"""Tests for vibe.algorithms.algorithm: the training envs every algorithm steps, and what
``OnlineAlgorithm`` gives each one (roles, evaluation). Each algorithm's own roles and evaluation are
checked in its package's tests (ppo_test, dqn_test, sac_test)."""

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms import algorithm
from vibe.core.types import TimeStep
from vibe.envs import evaluate as evaluation
from vibe.envs import gymnax_env, spaces, wrappers


@dataclasses.dataclass(frozen=True)
class CountEnv:
    """obs = [steps taken, episode id]: action 1 terminates, the id is random per reset. ``resets``
    counts the resets that really run (a host callback, which runs only where a ``lax.cond`` branch does)."""

    resets: list = dataclasses.field(default_factory=list, compare=False, hash=False)

    @property
    def default_params(self) -> Any:
        return None

    def reset(self, key, params):
        jax.debug.callback(lambda: self.resets.append(1))
        state = (jnp.zeros((), jnp.int32), jax.random.uniform(key))
        return state, TimeStep(self._obs(state), jnp.float32(0.0), jnp.bool_(False), jnp.bool_(False), {})

    def step(self, key, state, action, params):
        state = (state[0] + 1, state[1])
        return state, TimeStep(self._obs(state), jnp.float32(1.0), action == 1, jnp.bool_(False), {})

    def _obs(self, state):
        return jnp.stack([state[0].astype(jnp.float32), state[1]])

    def observation_space(self, params):
        return spaces.Box(-np.inf, np.inf, (2,))

    def action_space(self, params):
        return spaces.Discrete(2)


def test_training_env_is_auto_reset_and_episode_stats_above_the_vectorised_env():
    env = CountEnv()
    vec_env = algorithm.training_env(env, None, 3, owner="Test")
    # The same layering as wrappers.vectorize(wrappers.for_training(env), n).
    assert vec_env == wrappers.vectorize(wrappers.for_training(env), 3)
    assert isinstance(vec_env, wrappers.EpisodeStats) and isinstance(vec_env.env, wrappers.AutoReset)
    assert vec_env.env.env == wrappers.VecEnv(env, 3)


def test_training_env_resets_only_the_envs_that_are_done():
    env = CountEnv()
    vec_env = algorithm.training_env(env, None, 3, owner="Test")
    step = jax.jit(vec_env.step)
    state, timestep = jax.jit(vec_env.reset)(jax.random.PRNGKey(0), None)
    ids = np.asarray(timestep.obs[:, 1])
    assert set(timestep.info) >= {"final_obs", "episode_return", "episode_length", "done"}
    resets_after_reset = len(env.resets)

    state, timestep = step(jax.random.PRNGKey(1), state, jnp.array([0, 0, 0]), None)
    assert len(env.resets) == resets_after_reset  # nobody done: the reset does not run at all
    np.testing.assert_array_equal(timestep.obs, np.stack([[1.0, 1.0, 1.0], ids], -1))

    state, timestep = step(jax.random.PRNGKey(2), state, jnp.array([0, 1, 0]), None)
    assert len(env.resets) > resets_after_reset  # env 1 is done: the reset ran
    obs = np.asarray(timestep.obs)
    np.testing.assert_array_equal(obs[[0, 2]], [[2.0, ids[0]], [2.0, ids[2]]])  # the others keep their episode
    assert obs[1, 0] == 0.0 and obs[1, 1] != ids[1]  # env 1 starts a new one
    np.testing.assert_array_equal(timestep.info["final_obs"][1], [2.0, ids[1]])  # ... its last obs survives
    np.testing.assert_array_equal(timestep.info["done"], [False, True, False])
    np.testing.assert_array_equal(timestep.info["episode_return"], [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(timestep.info["episode_length"], [0, 2, 0])


@flax.struct.dataclass
class ToyState:
    params: Any
    env_state: Any
    obs: jax.Array
    step: jax.Array


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    num_updates: int = 1
    steps_per_update: int = 2


@dataclasses.dataclass(frozen=True)
class ToyAlgorithm(algorithm.OnlineAlgorithm[ToyConfig]):
    """A linear CartPole policy on OnlineAlgorithm's defaults: push right when the pole leans right."""

    def act(self, params, obs, key, *, greedy):
        greedy_action = (obs @ params["w"] > 0).astype(jnp.int32)
        if greedy:
            return greedy_action
        return jax.random.randint(key, greedy_action.shape, 0, 2, jnp.int32)


def _toy():
    env, params = gymnax_env.make("CartPole-v1")
    vec_env = algorithm.training_env(env, params, 2, owner="Toy")
    algo = ToyAlgorithm(ToyConfig(), env, params, vec_env)
    env_state, timestep = vec_env.reset(jax.random.PRNGKey(0), params)
    state = ToyState({"w": jnp.array([0.0, 0.0, 1.0, 1.0])}, env_state, timestep.obs, algorithm.counter())
    return algo, state


def test_default_roles_split_env_state_and_obs_and_shard_everything_else():
    algo, state = _toy()
    roles = algo.roles(state)
    assert algo.num_updates == 1 and algo.steps_per_update == 2  # read from the config
    assert isinstance(roles, ToyState)
    assert roles.env_state == "batch" and roles.obs == "batch"
    assert roles.params == "fsdp" and roles.step == "fsdp"
    assert algo.obs_stats(state) is None and algo.policy_input(None, state.obs) is state.obs


def test_evaluate_is_the_env_evaluation_of_the_greedy_policy():
    algo, state = _toy()
    key = jax.random.PRNGKey(7)
    returns = jax.jit(algo.evaluate, static_argnums=2)(state, key, 4)

    def greedy(obs, key):
        return algo.act(state.params, obs, key, greedy=True)

    expected = evaluation.evaluate(algo.env, algo.env_params, greedy, key, num_episodes=4)
    np.testing.assert_array_equal(returns, expected)
    assert returns.shape == (4,) and float(returns.min()) > 20.0  # the greedy policy balances, unlike random

    def random(obs, key):
        return algo.act(state.params, obs, key, greedy=False)

    assert float(evaluation.evaluate(algo.env, algo.env_params, random, key, num_episodes=4).mean()) < float(
        returns.mean()
    )


def test_strong_and_counter_give_strong_int32_leaves():
    weak = jnp.array(0)
    assert weak.weak_type
    strong = algorithm.strong(weak)
    assert not strong.weak_type and strong.dtype == weak.dtype and int(strong) == 0
    a, b = algorithm.counter(), algorithm.counter()
    assert a.dtype == jnp.int32 and a.shape == () and not a.weak_type
    assert a is not b  # separate buffers: a donated state may hold both


def test_example_obs_is_zeros_of_one_observation():
    image = algorithm.example_obs(spaces.Image(10, 10, 4, bool))
    assert image.shape == (10, 10, 4) and image.dtype == jnp.bool_ and not image.any()
    assert algorithm.example_obs(spaces.Box(-1.0, 1.0, (3,))).dtype == jnp.float32
