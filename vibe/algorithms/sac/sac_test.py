"""Tests for vibe.algorithms.sac.sac: replay wiring, warm-up, the train_step contract, roles. The learning
gate is in tests/learning_test.py."""

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.sac import sac
from vibe.algorithms.sac.config import SACConfig
from vibe.algorithms.sac.sac import SAC
from vibe.envs import gymnax_env, wrappers
from vibe.envs.evaluate import evaluate
from vibe.networks import heads
from vibe.networks.config import EncoderConfig

# 2 envs, learning from env step 8 on, 3 gradient steps per train_step, tiny networks.
SMALL = SACConfig(
    num_envs=2,
    total_timesteps=40,
    learning_starts=8,
    utd_ratio=1.5,
    batch_size=4,
    buffer_size=64,
    encoder=EncoderConfig(hidden_sizes=(8,), activation="relu"),
    lr=1e-2,
)


@dataclasses.dataclass(frozen=True)
class Setup:
    algo: SAC
    init: Any  # jitted key -> SACState
    step: Any  # jitted, donated, trace-counted train_step


@pytest.fixture(scope="module")
def small() -> Setup:
    """SMALL on Pendulum cut at 3 steps; every test shares one compiled init and train_step."""
    env, params = gymnax_env.make("Pendulum-v1")
    algo = SAC.make(SMALL, env, params.replace(max_steps_in_episode=3), env_id="Pendulum-v1")
    step = jax.jit(chex.assert_max_traces(algo.train_step, n=1), donate_argnums=0)
    return Setup(algo, jax.jit(algo.init), step)


def _stored(state: sac.SACState, count: int) -> sac.ReplayItem:
    """The first ``count`` transitions in the buffer, in insertion order (no wrap-around yet)."""
    return jax.tree.map(lambda x: np.asarray(x[0, :count]), state.buffer_state.experience)


def test_init_state_is_a_donatable_array_pytree(small):
    state = small.init(jax.random.PRNGKey(0))
    assert state.obs.shape == (2, 3)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
    assert not any(leaf.weak_type for leaf in jax.tree.leaves(state))
    np.testing.assert_allclose(state.params.log_alpha, 0.0)  # init_alpha = 1
    chex.assert_trees_all_equal(state.target_critic, state.params.critic)
    assert isinstance(small.algo.head, heads.TanhGaussian)
    np.testing.assert_array_equal(small.algo.head.low, [-2.0])  # Pendulum's real torque bounds
    np.testing.assert_array_equal(small.algo.head.high, [2.0])
    assert small.algo.target_entropy == -1.0
    out = jax.jit(lambda s: s, donate_argnums=0)(state)  # every leaf its own buffer
    assert int(out.step) == 0


def test_make_builds_the_training_envs_from_the_plain_env(small):
    algo = small.algo
    assert isinstance(algo.env, gymnax_env.GymnaxEnv)
    assert isinstance(algo.vec_env, wrappers.EpisodeStats) and isinstance(algo.vec_env.env, wrappers.AutoReset)
    assert isinstance(algo.vec_env.env.env, wrappers.VecEnv) and algo.vec_env.env.env.num_envs == 2
    assert isinstance(small.init(jax.random.PRNGKey(0)).env_state, wrappers.EpisodeStatsState)


def test_rejects_discrete_actions():
    env, params = gymnax_env.make("CartPole-v1")
    with pytest.raises(
        ValueError, match=r"bounded 1-D Box action space \(continuous actions\); CartPole-v1 has Discrete"
    ):
        SAC.make(SMALL, env, params, env_id="CartPole-v1")


def test_rejects_an_image_encoder():
    env, params = gymnax_env.make("Pendulum-v1")
    config = dataclasses.replace(SMALL, encoder=EncoderConfig(kind="cnn"))
    with pytest.raises(ValueError, match=r"Pendulum-v1 observes .* asks for cnn: pass --algo\.encoder\.kind mlp"):
        SAC.make(config, env, params, env_id="Pendulum-v1")


def test_buffer_stores_the_true_final_obs_and_no_termination_on_truncation(small):
    state = small.init(jax.random.PRNGKey(0))
    observations = [np.asarray(state.obs)]
    for _ in range(4):
        state, _ = small.step(state)
        observations.append(np.asarray(state.obs))
    # Items are added env-major per step: [step0 env0, step0 env1, step1 env0, ...].
    items = jax.tree.map(lambda x: x.reshape((4, 2, *x.shape[1:])), _stored(state, 8))
    np.testing.assert_array_equal(items.obs, np.stack(observations[:4]))
    assert not items.terminated.any()  # Pendulum never terminates; the cut at 3 steps is a truncation
    np.testing.assert_array_equal(items.next_obs[:2], items.obs[1:3])  # within an episode
    # Step 2 ended the episodes: next_obs is their final observation, not the reset one.
    assert not np.allclose(items.next_obs[2], items.obs[3])
    assert int(state.env_steps) == 8 and int(state.buffer_state.current_index) == 8


def test_warm_up_actions_are_uniform_over_the_real_bounds(small):
    state = small.init(jax.random.PRNGKey(0))
    collect = jax.jit(lambda s, k: sac.collect(small.algo, s, k))
    actions = np.concatenate(
        [_stored(collect(state, jax.random.PRNGKey(i))[0], 2).action for i in range(100)]
    )  # 200 warm-up actions
    assert actions.min() >= -2.0 and actions.max() <= 2.0
    assert (actions > 1.0).mean() > 0.15 and (actions < -1.0).mean() > 0.15  # +-2, not +-1
    assert abs(actions.mean()) < 0.3


def test_no_updates_before_learning_starts_then_utd_gradient_steps(small):
    state = small.init(jax.random.PRNGKey(0))
    initial = jax.tree.map(np.asarray, state.params)
    for _ in range(3):  # env_steps 2, 4, 6 < learning_starts = 8
        state, metrics = small.step(state)
        assert all(float(metrics.per_update[k]) == 0.0 for k in sac.LOSS_METRICS if k != "alpha")
        assert float(metrics.per_update["alpha"]) == 1.0
    chex.assert_trees_all_equal(state.params, initial)
    state, metrics = small.step(state)  # env_steps 8: learning starts
    # Mean over the 3 steps of the alpha each used: 1 for the first, then lowered (entropy is above -1).
    assert 0.95 < float(metrics.per_update["alpha"]) < 1.0
    assert float(metrics.per_update["loss/q"]) > 0.0
    assert int(state.opt_state[0].count) == 3  # utd_ratio 1.5 x 2 envs
    state, _ = small.step(state)
    assert int(state.opt_state[0].count) == 6
    assert float(state.params.log_alpha) < 0.0


def test_target_critic_is_a_polyak_average(small):
    algo = dataclasses.replace(small.algo, config=dataclasses.replace(SMALL, tau=0.25))
    state = small.init(jax.random.PRNGKey(0))
    batch = jax.tree.map(lambda x: x[0, :4], state.buffer_state.experience)  # zeros, [b=4]
    batch = batch.replace(obs=jax.random.normal(jax.random.PRNGKey(1), (4, 3)), reward=jnp.ones(4))
    carry = (state.params, state.target_critic, state.opt_state)
    before = jax.tree.map(np.asarray, state.target_critic)
    (params, target, _), _ = jax.jit(lambda c, b, k: sac.update(algo, c, b, k))(carry, batch, jax.random.PRNGKey(2))
    expected = jax.tree.map(lambda new, old: 0.25 * np.asarray(new) + 0.75 * old, params.critic, before)
    chex.assert_trees_all_close(target, expected, rtol=1e-6, atol=1e-7)
    kernel = lambda tree: np.asarray(tree["params"]["VmapMLP_0"]["Dense_0"]["kernel"])  # noqa: E731
    assert not np.allclose(kernel(target), kernel(before))


def test_train_step_metrics_and_no_retrace(small):
    state = small.init(jax.random.PRNGKey(0))
    # The state's types are a fixed point of train_step (dtype, shape and weak type of every leaf).
    out_shapes, _ = jax.eval_shape(small.algo.train_step, state)
    for leaf, out in zip(jax.tree.leaves(state), jax.tree.leaves(out_shapes), strict=True):
        assert (leaf.shape, leaf.dtype, leaf.weak_type) == (out.shape, out.dtype, out.weak_type)
    for _ in range(6):  # warm-up and learning steps alike; the shared step is traced once per module
        state, metrics = small.step(state)
    assert set(metrics.per_update) == set(sac.LOSS_METRICS)
    assert set(metrics.episode_sums) == {"return", "length"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in jax.tree.leaves(metrics))
    # 2 envs x 3-step episodes: at step 6 both envs finish their second episode.
    assert float(metrics.episode_count) == 2.0 and float(metrics.episode_sums["length"]) == 6.0
    assert int(state.step) == 6 and int(state.env_steps) == 12


def test_sac_losses_reach_only_their_own_parameters(small):
    # The stop-gradients split one backward pass into three: with the actor and alpha losses removed,
    # the gradient of the critic loss alone must be what reaches the critic in the sum, and so on.
    state = small.init(jax.random.PRNGKey(0))
    for _ in range(4):
        state, _ = small.step(state)
    batch = jax.tree.map(lambda x: x[0, :4], state.buffer_state.experience)
    key = jax.random.PRNGKey(3)

    def grad_of(name):
        def loss(params):
            return sac.sac_losses(small.algo, params, state.target_critic, batch, key)[1][name]

        return jax.grad(loss)(state.params)

    total = jax.grad(lambda p: sac.sac_losses(small.algo, p, state.target_critic, batch, key)[0])(state.params)
    q, actor, alpha = grad_of("loss/q"), grad_of("loss/actor"), grad_of("loss/alpha")
    chex.assert_trees_all_close(total.critic, q.critic, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(total.actor, actor.actor, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(total.log_alpha, alpha.log_alpha, rtol=1e-5)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(q.actor))  # critic loss: no actor grad
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(actor.critic))  # actor loss: frozen critic


def test_algorithm_in_a_fori_loop_chunk_is_deterministic():
    env, params = gymnax_env.make("Pendulum-v1")
    algo = SAC.make(SMALL, env, params)
    assert algo.name == "sac" and algo.num_updates == 20 and algo.steps_per_update == 2
    chunk = jax.jit(lambda s, k: jax.lax.fori_loop(0, k, lambda _, s: algo.train_step(s)[0], s), donate_argnums=0)
    a = chunk(algo.init(jax.random.PRNGKey(1)), jnp.int32(7))
    b = chunk(algo.init(jax.random.PRNGKey(1)), jnp.int32(7))
    chex.assert_trees_all_equal(a, b)
    c = chunk(algo.init(jax.random.PRNGKey(2)), jnp.int32(7))
    assert not np.array_equal(np.asarray(c.obs), np.asarray(a.obs))
    obs = jax.random.normal(jax.random.PRNGKey(3), (5, 3))
    greedy = algo.act(a.params, algo.policy_input(algo.obs_stats(a), obs), jax.random.PRNGKey(0), greedy=True)
    assert greedy.shape == (5, 1) and np.all(np.abs(np.asarray(greedy)) <= 2.0)
    np.testing.assert_array_equal(greedy, algo.act(a.params, obs, jax.random.PRNGKey(9), greedy=True))
    # The greedy action is the scaled tanh of the actor's mean.
    mean, _ = sac.actor_output(algo, a.params.actor, obs)
    np.testing.assert_allclose(greedy, 2.0 * np.tanh(np.asarray(mean)), rtol=1e-6)
    sampled = algo.act(a.params, obs, jax.random.PRNGKey(0), greedy=False)
    assert sampled.shape == (5, 1) and np.all(np.abs(np.asarray(sampled)) <= 2.0)
    assert not np.allclose(sampled, greedy)
    assert algo.obs_stats(a) is None


def test_roles_split_the_envs_and_shard_the_rest(small):
    roles = small.algo.roles(small.init(jax.random.PRNGKey(0)))
    assert roles.env_state == "batch" and roles.obs == "batch"
    for name in ("params", "target_critic", "opt_state", "buffer_state", "key", "step", "env_steps"):
        assert getattr(roles, name) == "fsdp", name


def test_evaluate_runs_the_greedy_policy_on_the_plain_env(small):
    algo, state = small.algo, small.init(jax.random.PRNGKey(0))

    def scaled_tanh_of_the_mean(obs, key):
        return 2.0 * jnp.tanh(sac.actor_output(algo, state.params.actor, obs)[0])

    key = jax.random.PRNGKey(5)
    returns = jax.jit(algo.evaluate, static_argnums=2)(state, key, 3)
    expected = evaluate(algo.env, algo.env_params, scaled_tanh_of_the_mean, key, num_episodes=3)
    np.testing.assert_allclose(returns, expected, rtol=1e-5)
