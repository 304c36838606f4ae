"""Tests for vibe.algorithms.ppo.ppo: rollout wiring, the train_step contract, Box actions, observation
normalisation, roles. The learning gates are in tests/learning_test.py."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.ppo import ppo
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.ppo.ppo import PPO
from vibe.envs import gymnax_env, normalize, spaces, wrappers
from vibe.envs.evaluate import evaluate
from vibe.networks import heads
from vibe.networks.config import EncoderConfig

SMALL = PPOConfig(
    num_envs=2,
    num_steps=6,
    num_minibatches=2,
    update_epochs=2,
    encoder=EncoderConfig(hidden_sizes=(16,), activation="tanh"),
    total_timesteps=1200,
)


def _cartpole(config: PPOConfig = SMALL, max_steps: int = 500) -> PPO:
    env, params = gymnax_env.make("CartPole-v1")
    return PPO.make(config, env, params.replace(max_steps_in_episode=max_steps), env_id="CartPole-v1")


def _signature(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), tree)


def test_init_state_is_a_donatable_array_pytree():
    state = _cartpole().init(jax.random.PRNGKey(0))
    assert state.obs.shape == (2, 4)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
    assert state.step.dtype == jnp.int32 and state.env_steps.dtype == jnp.int32
    # A runner donates the state; every leaf must be its own buffer.
    out = jax.jit(lambda s: s, donate_argnums=0)(state)
    assert int(out.step) == 0


def test_make_builds_the_training_envs_from_the_plain_env():
    # PPO takes the plain env (evaluation runs on it) and adds auto-reset and episode statistics itself,
    # above the vectorised env.
    env, params = gymnax_env.make("CartPole-v1")
    algo = PPO.make(SMALL, env, params)
    assert algo.env is env
    assert isinstance(algo.vec_env, wrappers.EpisodeStats) and isinstance(algo.vec_env.env, wrappers.AutoReset)
    assert isinstance(algo.vec_env.env.env, wrappers.VecEnv) and algo.vec_env.env.env.num_envs == 2
    state = algo.init(jax.random.PRNGKey(0))
    assert isinstance(state.env_state, wrappers.EpisodeStatsState)
    assert algo.name == "ppo" and algo.num_updates == 100 and algo.steps_per_update == 12


@dataclasses.dataclass(frozen=True)
class _MatrixActions(wrappers.Wrapper):
    """Claims a 2-D Box action space, which PPO's Gaussian head does not handle."""

    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (2, 2))


def test_make_rejects_non_flat_box_actions():
    env, params = gymnax_env.make("Pendulum-v1")
    with pytest.raises(ValueError, match="1-D float Box"):
        PPO.make(SMALL, _MatrixActions(env), params)


def test_make_rejects_an_image_encoder_on_flat_observations():
    env, params = gymnax_env.make("CartPole-v1")
    config = dataclasses.replace(SMALL, encoder=EncoderConfig(kind="cnn"))
    with pytest.raises(ValueError, match=r"env CartPole-v1 observes .*--algo\.encoder\.kind mlp"):
        PPO.make(config, env, params, env_id="CartPole-v1")


def test_rollout_next_obs_is_the_final_obs_on_episode_ends():
    algo = _cartpole(max_steps=3)
    state = algo.init(jax.random.PRNGKey(0))
    new_state, traj, episodes = jax.jit(lambda s: ppo.collect_rollout(algo, s))(state)
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
    # Values come from the current critic, log-probs from the current policy.
    values = ppo.state_values(algo, state.params, traj.obs)
    np.testing.assert_allclose(traj.value, values, rtol=1e-6)
    logits = ppo.policy_output(algo, state.params, traj.obs)
    log_softmax = np.asarray(jax.nn.log_softmax(logits))
    expected = np.take_along_axis(log_softmax, np.asarray(traj.action)[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(traj.log_prob, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_steps", [3, 500])
def test_bootstrap_values_are_the_critic_on_the_true_next_obs(max_steps):
    # With 3-step episodes every third step truncates and needs V(final_obs); with 500 none does in 6 steps
    # and no critic pass over next_obs runs. Either way the bootstraps equal V(next_obs) up to rounding.
    algo = _cartpole(max_steps=max_steps)
    state = algo.init(jax.random.PRNGKey(0))
    new_state, traj, _ = jax.jit(lambda s: ppo.collect_rollout(algo, s))(state)
    assert bool(np.asarray(traj.truncated).any()) == (max_steps == 3)
    bootstrap = jax.jit(lambda p, t, o: ppo.bootstrap_values(algo, p, t, o))(state.params, traj, new_state.obs)
    expected = ppo.state_values(algo, state.params, traj.next_obs)
    np.testing.assert_allclose(bootstrap, expected, rtol=1e-6, atol=1e-7)
    # A truncated step bootstraps from its final obs, not from the reset obs the next step starts from.
    if max_steps == 3:
        reset_values = np.asarray(traj.value[3])
        assert np.abs(np.asarray(bootstrap[2]) - reset_values).min() > 1e-4


def test_train_step_metrics_and_single_trace():
    algo = _cartpole(max_steps=3)
    state = algo.init(jax.random.PRNGKey(0))
    step = jax.jit(chex.assert_max_traces(algo.train_step, n=1), donate_argnums=0)
    old_params = jax.tree.map(np.asarray, state.params)
    state, metrics = step(state)
    state, metrics = step(state)
    assert set(metrics.per_update) == {"loss/total", "loss/policy", "loss/value", "loss/entropy", "loss/approx_kl"}
    assert set(metrics.episode_sums) == {"return", "length"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in jax.tree.leaves(metrics))
    # 2 envs x 6 steps with 3-step episodes: 4 episodes of return 3 each.
    assert float(metrics.episode_count) == 4.0
    assert float(metrics.episode_sums["return"]) == 12.0
    assert float(metrics.episode_sums["length"]) == 12.0
    assert int(state.step) == 2 and int(state.env_steps) == 24
    moved = jax.tree.map(lambda a, b: np.abs(a - np.asarray(b)).max(), old_params, state.params)
    assert max(jax.tree.leaves(moved)) > 0.0


def test_unbound_train_step_is_the_method():
    algo = _cartpole()
    state = algo.init(jax.random.PRNGKey(0))
    a, metrics_a = jax.jit(lambda s: PPO.train_step(algo, s))(state)
    b, metrics_b = jax.jit(algo.train_step)(state)
    chex.assert_trees_all_equal((a, metrics_a), (b, metrics_b))


def test_scanned_train_steps_are_deterministic():
    algo = _cartpole()
    chunk = jax.jit(lambda s: jax.lax.scan(lambda s, _: algo.train_step(s), s, None, length=3))
    a, metrics_a = chunk(algo.init(jax.random.PRNGKey(1)))
    b, _ = chunk(algo.init(jax.random.PRNGKey(1)))
    assert metrics_a.per_update["loss/total"].shape == (3,)
    chex.assert_trees_all_equal(a, b)
    c, _ = chunk(algo.init(jax.random.PRNGKey(2)))
    assert not np.array_equal(np.asarray(c.obs), np.asarray(a.obs))


def test_act_greedy_is_argmax():
    algo = _cartpole()
    state = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    logits = ppo.policy_output(algo, state.params, obs)
    greedy = algo.act(state.params, obs, jax.random.PRNGKey(0), greedy=True)
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(logits), -1))
    sampled = algo.act(state.params, obs, jax.random.PRNGKey(0), greedy=False)
    assert sampled.shape == (5,) and sampled.dtype == jnp.int32


def test_roles_split_the_envs_and_shard_the_rest():
    algo = _cartpole()
    roles = algo.roles(algo.init(jax.random.PRNGKey(0)))
    assert roles.env_state == "batch" and roles.obs == "batch"
    assert roles.params == roles.opt_state == roles.key == roles.step == roles.env_steps == "fsdp"
    assert algo.obs_stats(algo.init(jax.random.PRNGKey(0))) is None


# --- Box actions (Pendulum-v1: obs [3], one torque in [-2, 2]) ---------------------------------

# Wide initial Gaussian (std e^1.5 = 4.5) so samples often leave [-2, 2].
WIDE = dataclasses.replace(SMALL, init_log_std=1.5)


@dataclasses.dataclass(frozen=True)
class _RewardIsAction(wrappers.Wrapper):
    """Pendulum whose reward is the torque it received, so a rollout records what the env got."""

    def step(self, key, state, action, params):
        state, timestep = self.env.step(key, state, action, params)
        return state, dataclasses.replace(timestep, reward=action[0])


def _pendulum(config: PPOConfig, spy: bool = False) -> PPO:
    env, params = gymnax_env.make("Pendulum-v1")
    return PPO.make(config, _RewardIsAction(env) if spy else env, params)


def _log_std(params) -> np.ndarray:
    return np.asarray(params["params"]["policy_head"]["_LogStd_0"]["log_std"])


def test_box_actions_get_a_gaussian_head():
    algo = _pendulum(WIDE)
    assert isinstance(algo.head, heads.Gaussian) and algo.head.action_dim == 1
    assert algo.head.init_log_std == 1.5
    state = algo.init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(_log_std(state.params), [1.5])
    assert state.obs.shape == (2, 3)
    mean, log_std = ppo.policy_output(algo, state.params, state.obs)
    assert mean.shape == (2, 1) and log_std.shape == (2, 1)


def test_box_actions_are_clipped_only_where_they_enter_the_env():
    algo = _pendulum(WIDE, spy=True)
    state = algo.init(jax.random.PRNGKey(0))
    _, traj, _ = jax.jit(lambda s: ppo.collect_rollout(algo, s))(state)
    action = np.asarray(traj.action)
    assert action.shape == (6, 2, 1) and action.dtype == np.float32
    assert (np.abs(action) > 2.0).any() and (np.abs(action) < 2.0).any()  # both cases occur
    # The env received the clipped torque; the rollout stored the unclipped sample ...
    np.testing.assert_array_equal(np.asarray(traj.reward), np.clip(action[..., 0], -2.0, 2.0))
    # ... and its log-probability under the behaviour policy, not that of the clipped action:
    # log N(a; mean, e^{log_std}) = -((a - mean) / std)^2 / 2 - log_std - log(2 pi) / 2 (one feature).
    mean, log_std = (np.asarray(x, np.float64) for x in ppo.policy_output(algo, state.params, traj.obs))
    by_hand = (-0.5 * ((action - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi))[..., 0]
    np.testing.assert_allclose(traj.log_prob, by_hand, rtol=1e-5)


def test_box_greedy_action_is_the_mean_clipped_to_the_bounds():
    algo = _pendulum(SMALL)
    state = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(3), (4, 3))
    mean, _ = ppo.policy_output(algo, state.params, obs)
    greedy = algo.act(state.params, obs, jax.random.PRNGKey(0), greedy=True)
    np.testing.assert_array_equal(greedy, mean)  # initial means are near 0: inside the bounds
    # Shift the mean layer's bias by +5: the mean leaves [-2, 2] and the greedy action is the bound.
    p = state.params["params"]
    mean_layer = {**p["policy_head"]["Dense_0"], "bias": p["policy_head"]["Dense_0"]["bias"] + 5.0}
    pushed = {"params": {**p, "policy_head": {**p["policy_head"], "Dense_0": mean_layer}}}
    greedy = algo.act(pushed, obs, jax.random.PRNGKey(0), greedy=True)
    np.testing.assert_array_equal(greedy, np.full((4, 1), 2.0, np.float32))
    sampled = algo.act(state.params, obs, jax.random.PRNGKey(0), greedy=False)
    assert sampled.shape == (4, 1) and np.all(np.abs(np.asarray(sampled)) <= 2.0)


def test_box_train_step_keeps_the_state_types_and_traces_once():
    algo = _pendulum(WIDE)
    state = algo.init(jax.random.PRNGKey(0))
    types = _signature(state)
    step = jax.jit(chex.assert_max_traces(algo.train_step, n=1), donate_argnums=0)
    old_log_std = float(_log_std(state.params)[0])
    for _ in range(3):
        state, metrics = step(state)
    assert _signature(state) == types
    assert all(v.shape == () and v.dtype == jnp.float32 for v in jax.tree.leaves(metrics))
    # Entropy of N(., e^{2 log_std}) in 1-D is log_std + log(2 pi e)/2, close to the initial 1.5 + 1.42.
    assert abs(float(metrics.per_update["loss/entropy"]) - (1.5 + 0.5 * np.log(2 * np.pi * np.e))) < 0.05
    assert float(_log_std(state.params)[0]) != old_log_std
    assert int(state.env_steps) == 36


# --- Observation normalisation (normalize_obs) ------------------------------------------------

NORM = dataclasses.replace(SMALL, normalize_obs=True)


def _pendulum_obs(pendulum_state) -> np.ndarray:
    """Pendulum-v1's raw observation [cos theta, sin theta, theta_dot] from its state."""
    theta, theta_dot = np.asarray(pendulum_state.theta), np.asarray(pendulum_state.theta_dot)
    return np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=-1)


def _normalized(stats: normalize.RunningMeanStd, obs) -> np.ndarray:
    """By hand: clip((obs - mean) / sqrt(var + 1e-8), -10, 10)."""
    mean, var = np.asarray(stats.mean), np.asarray(stats.var)
    return np.clip((np.asarray(obs) - mean) / np.sqrt(var + 1e-8), -10.0, 10.0)


def test_normalize_obs_off_keeps_the_plain_env_state():
    algo = _cartpole()
    state = algo.init(jax.random.PRNGKey(0))
    assert isinstance(state.env_state, wrappers.EpisodeStatsState)
    assert not isinstance(algo.vec_env, normalize.NormalizeObservation)
    obs = jnp.ones((2, 4))
    assert algo.policy_input(algo.obs_stats(state), obs) is obs
    assert algo.obs_stats(state) is None


def test_normalize_obs_stats_live_in_the_state_and_train_step_keeps_its_types():
    algo = _pendulum(NORM)
    state = algo.init(jax.random.PRNGKey(0))
    assert isinstance(state.env_state, normalize.NormalizeObservationState)
    types = _signature(state)
    step = jax.jit(chex.assert_max_traces(algo.train_step, n=1), donate_argnums=0)
    for _ in range(3):
        state, _ = step(state)
    assert _signature(state) == types
    stats = state.env_state.stats
    assert algo.obs_stats(state) is stats
    # The statistics are leaves of the state pytree, so a checkpoint (one save of the state) holds them.
    leaves = jax.tree.leaves(state)
    assert any(leaf is stats.mean for leaf in leaves) and any(leaf is stats.count for leaf in leaves)
    # 2 envs x (1 reset + 3 rollouts x 6 steps) observations, plus the 1e-4 prior.
    np.testing.assert_allclose(stats.count, 38.0001, rtol=1e-6)
    assert stats.mean.shape == (3,) and np.abs(np.asarray(stats.mean)).max() > 0.05
    assert np.abs(np.asarray(stats.var) - 1.0).max() > 0.05
    # The stored obs are the envs' current raw observations normalised with the current statistics.
    raw = _pendulum_obs(state.env_state.env_state.env_state)
    np.testing.assert_allclose(state.obs, _normalized(stats, raw), rtol=1e-4, atol=1e-5)


def test_normalize_obs_rollout_bootstraps_from_the_normalised_final_obs():
    algo = _cartpole(NORM, max_steps=3)
    state = algo.init(jax.random.PRNGKey(0))
    _, traj, _ = jax.jit(lambda s: ppo.collect_rollout(algo, s))(state)
    obs, next_obs = np.asarray(traj.obs), np.asarray(traj.next_obs)
    # Within an episode next_obs[t] is obs[t + 1] bit for bit: both were normalised with the statistics
    # after step t, so V(next_obs) sees the network's input scale.
    np.testing.assert_array_equal(next_obs[:2], obs[1:3])
    np.testing.assert_array_equal(next_obs[3:5], obs[4:6])
    assert not np.allclose(next_obs[2], obs[3])  # at the cut: the normalised final obs, not the reset obs
    assert np.abs(obs).max() <= 10.0 and np.abs(obs).max() > 1.0  # normalised, not raw CartPole scale


def test_normalize_obs_greedy_policy_applies_the_frozen_stats():
    algo = _pendulum(NORM)
    state, _ = algo.train_step(algo.init(jax.random.PRNGKey(0)))
    raw = jax.random.normal(jax.random.PRNGKey(3), (5, 3)) * jnp.array([1.0, 1.0, 4.0])
    stats, key = algo.obs_stats(state), jax.random.PRNGKey(0)
    assert stats is state.env_state.stats
    np.testing.assert_allclose(algo.policy_input(stats, raw), _normalized(stats, raw), rtol=1e-5)
    greedy = algo.act(state.params, algo.policy_input(stats, raw), key, greedy=True)
    manual = algo.act(state.params, jnp.asarray(_normalized(stats, raw)), key, greedy=True)
    np.testing.assert_allclose(greedy, manual, rtol=1e-5, atol=1e-6)
    unnormalised = algo.act(state.params, raw, key, greedy=True)
    assert not np.allclose(greedy, unnormalised, atol=1e-4)
    # Acting does not update the statistics.
    np.testing.assert_allclose(state.env_state.stats.count, 2 * (1 + 6) + 1e-4, rtol=1e-6)


def test_normalize_obs_evaluate_uses_the_frozen_stats_on_raw_observations():
    env, params = gymnax_env.make("Pendulum-v1")
    params = params.replace(max_steps_in_episode=20)
    algo = PPO.make(NORM, env, params)
    state, _ = algo.train_step(algo.init(jax.random.PRNGKey(0)))
    stats = state.env_state.stats

    def by_hand(obs, key):
        normalised = normalize.normalize(stats, obs)
        return ppo.env_action(algo.action_space, ppo.policy_output(algo, state.params, normalised)[0])

    key = jax.random.PRNGKey(5)
    expected = evaluate(env, params, by_hand, key, num_episodes=3)
    np.testing.assert_allclose(jax.jit(algo.evaluate, static_argnums=2)(state, key, 3), expected, rtol=1e-5)


def test_normalize_obs_evaluate_under_a_vmap_over_seeds():
    # The runner's shapes: vmapped init and train_step, then evaluation vmapped over (state, key).
    env, params = gymnax_env.make("Pendulum-v1")
    params = params.replace(max_steps_in_episode=20)
    algo = PPO.make(NORM, env, params)
    states = jax.vmap(algo.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    states, _ = jax.jit(jax.vmap(algo.train_step))(states)
    assert states.env_state.stats.mean.shape == (2, 3)
    assert not np.allclose(states.env_state.stats.mean[0], states.env_state.stats.mean[1])

    def one(state, key):
        return algo.evaluate(state, key, 2)

    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    vmapped = jax.jit(jax.vmap(one))(states, keys)
    first = jax.jit(one)(jax.tree.map(lambda x: x[0], states), keys[0])
    np.testing.assert_allclose(vmapped[0], first, rtol=1e-5)


def test_normalize_obs_roles_replicate_the_stats():
    algo = _pendulum(NORM)
    state = algo.init(jax.random.PRNGKey(0))
    roles = algo.roles(state)
    # One set of statistics shared by all envs: the same on every device; the envs split over devices.
    assert isinstance(roles.env_state, normalize.NormalizeObservationState)
    assert roles.env_state.stats == "replicated" and roles.env_state.env_state == "batch"
    assert roles.obs == "batch" and roles.params == "fsdp"
    # One role for each subtree of the state: a prefix of its structure.
    jax.tree.map(lambda role, _: role, roles, state)


def test_normalize_obs_resume_through_host_arrays_is_exact():
    # A checkpoint saves and restores the state's leaves; the statistics among them continue exactly.
    algo = _pendulum(NORM)
    chunk = jax.jit(lambda s: jax.lax.scan(lambda s, _: algo.train_step(s), s, None, length=2)[0])
    straight = chunk(chunk(algo.init(jax.random.PRNGKey(4))))
    half = chunk(algo.init(jax.random.PRNGKey(4)))
    leaves, treedef = jax.tree.flatten(half)
    restored = jax.tree.unflatten(treedef, [jnp.asarray(np.asarray(leaf)) for leaf in leaves])
    chex.assert_trees_all_equal(chunk(restored), straight)
