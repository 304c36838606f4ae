"""IQL on hand-made transitions, continuous (Pendulum) and discrete (CartPole): the expectile loss,
terminated-vs-truncated targets, learning checks and resume determinism."""

import dataclasses
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.bc.config import DataConfig
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.iql.iql import (
    IQL,
    CategoricalActor,
    DiscreteTwinCritic,
    expectile_loss,
    iql_losses,
    trained,
)
from vibe.envs import registry, spaces
from vibe.networks.config import EncoderConfig

SMALL = EncoderConfig(hidden_sizes=(32,), activation="relu")


def transitions(n: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    action = rng.uniform(-2, 2, size=(n, 1, 1)).astype(np.float32)
    return {
        "obs": obs,
        "next_obs": np.roll(obs, -1, axis=0),
        "action": action,
        "action_is_pad": np.zeros((n, 1), bool),
        # Reward -|a - 1|: the best recorded actions are those near 1.
        "reward": -np.abs(action[:, 0, 0] - 1.0),
        "terminated": np.arange(n) % 16 == 15,
        "rows": np.arange(n, dtype=np.int32),
    }


def bandit(n: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """CartPole-shaped transitions whose reward is 1 for the better action, ``obs[0] > 0``, and 0 for the
    other; the recorded actions are the better one only 30% of the time, so cloning them picks the worse."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    best = better_action(obs)
    action = np.where(rng.uniform(size=n) < 0.3, best, 1 - best).astype(np.int32)
    return {
        "obs": obs,
        "next_obs": np.roll(obs, -1, axis=0),
        "action": action[:, None],  # [n, horizon 1] int32, as bc.data.load gives discrete actions
        "action_is_pad": np.zeros((n, 1), bool),
        "reward": (action == best).astype(np.float32),
        "terminated": np.arange(n) % 16 == 15,
        "rows": np.arange(n, dtype=np.int32),
    }


def better_action(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 0] > 0).astype(np.int32)


def make(data: dict[str, np.ndarray], env_id: str = "Pendulum-v1", **overrides: Any) -> IQL:
    env, params = registry.make(env_id)
    config = IQLConfig(data=DataConfig(dataset="x", batch_size=32), encoder=SMALL, lr=1e-3)
    config = dataclasses.replace(config, **overrides)
    return IQL.make(config, env, params, env_id=env_id, data=data)


def test_expectile_loss_weights_the_sides():
    diff = jnp.asarray([-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(expectile_loss(diff, 0.7), [0.3 * 4, 0.3, 0.0, 0.7, 0.7 * 4], rtol=1e-6)
    np.testing.assert_allclose(expectile_loss(diff, 0.5), 0.5 * diff**2)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_terminated_transitions_do_not_bootstrap(env_id: str):
    """With gamma 1, the critics' loss at Q = 0 is the mean of targets^2: r^2 where terminated, (r + V(s'))^2 else."""
    data = transitions(4) if env_id == "Pendulum-v1" else bandit(4)
    iql = make(data, env_id, gamma=1.0)
    state = iql.init(jax.random.PRNGKey(0))
    zero_critic = jax.tree.map(jnp.zeros_like, state.params.critic)
    nets = (state.params.actor, zero_critic, state.params.value)
    batch = {k: jnp.asarray(v) for k, v in data.items() if k != "rows"}
    batch["terminated"] = jnp.asarray([True, False, True, False])
    _, info = iql_losses(iql, nets, state.params.normalizer, zero_critic, batch)
    v_next = cast(jax.Array, iql.value.apply(state.params.value, batch["next_obs"]))
    target = batch["reward"] + jnp.where(batch["terminated"], 0.0, v_next)
    assert float(info["loss/q"]) == pytest.approx(2 * float((target**2).mean()), rel=1e-5)


def test_iql_prefers_the_better_actions_and_resumes_deterministically():
    iql = make(transitions(256))
    state = iql.init(jax.random.PRNGKey(0))
    step = jax.jit(iql.train_step)
    for _ in range(400):
        state, m = step(state)
    assert np.isfinite(float(m.per_update["loss/q"]))
    action = iql.act(state.params, jnp.zeros((16, 3)), jax.random.PRNGKey(0), greedy=True)
    assert action.shape == (16, 1) and float(jnp.abs(action).max()) <= 2.0
    # AWR pulls the mean from the data's mean (0) towards the rewarded actions (near 1).
    assert float(action.mean()) > 0.3
    again = iql.init(jax.random.PRNGKey(0))
    for _ in range(400):
        again, _ = step(again)
    jax.tree.map(np.testing.assert_array_equal, trained(state.params), trained(again.params))


def test_discrete_iql_prefers_the_better_action_and_resumes_deterministically():
    iql = make(bandit(), "CartPole-v1", tau=0.05)
    assert isinstance(iql.critic, DiscreteTwinCritic) and isinstance(iql.actor, CategoricalActor)
    state = iql.init(jax.random.PRNGKey(0))
    step = jax.jit(iql.train_step)
    for _ in range(400):
        state, m = step(state)
    assert np.isfinite(float(m.per_update["loss/q"]))
    held_out = bandit(512, seed=1)["obs"]
    best = better_action(held_out)
    obs = jnp.asarray(held_out)
    greedy = iql.act(state.params, obs, jax.random.PRNGKey(0), greedy=True)
    assert greedy.shape == (512,) and greedy.dtype == jnp.int32
    # The data takes the better action 30% of the time; the advantage weights pick it (measured 0.89).
    accuracy = float((np.asarray(greedy) == best).mean())
    assert accuracy > 0.75, accuracy
    # Both critics rank it first (measured: 92% of states, Q gap 0.68 of the true 1).
    q = np.asarray(iql.critic.apply(state.params.critic, obs, method=DiscreteTwinCritic.q_values))
    assert q.shape == (2, 512, 2)
    q_best = np.take_along_axis(q, best[None, :, None], -1)[..., 0]
    q_worse = np.take_along_axis(q, 1 - best[None, :, None], -1)[..., 0]
    assert (q_best > q_worse).mean() > 0.8 and (q_best - q_worse).mean() > 0.4
    sampled = np.asarray(iql.act(state.params, obs, jax.random.PRNGKey(1), greedy=False))
    assert set(np.unique(sampled)) <= {0, 1} and 0.5 < (sampled == best).mean() < accuracy + 0.05
    again = iql.init(jax.random.PRNGKey(0))
    for _ in range(400):
        again, _ = step(again)
    jax.tree.map(np.testing.assert_array_equal, trained(state.params), trained(again.params))
    jax.tree.map(np.testing.assert_array_equal, state.target_critic, again.target_critic)


class UnboundedActions:
    """An env's observations with an unbounded 1-D Box of actions (only what ``IQL.make`` reads)."""

    def __init__(self, env: Any):
        self.env = env

    def observation_space(self, params: Any) -> Any:
        return self.env.observation_space(params)

    def action_space(self, params: Any) -> spaces.Box:
        return spaces.Box(low=-np.inf, high=np.inf, shape=(1,))


def test_unbounded_actions_and_chunked_configs_are_refused():
    env, params = registry.make("Pendulum-v1")
    with pytest.raises(ValueError, match="Discrete or bounded 1-D Box"):
        IQL.make(IQLConfig(), cast(Any, UnboundedActions(env)), params, env_id="Pendulum-v1")
    with pytest.raises(ValueError, match="action-horizon 1"):
        IQL.make(IQLConfig(data=DataConfig(action_horizon=4)), env, params, env_id="Pendulum-v1")
