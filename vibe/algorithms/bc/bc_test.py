"""BC on hand-made arrays (no dataset files): losses, chunk masking, normalisation, acting, determinism."""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.algorithms.bc import data as offline_data
from vibe.algorithms.bc.bc import BC, bc_loss
from vibe.algorithms.bc.config import BCConfig, DataConfig
from vibe.data.normalize import NormStats
from vibe.envs import registry
from vibe.networks.config import EncoderConfig

SMALL = EncoderConfig(hidden_sizes=(32,), activation="relu")


def cartpole_data(n: int = 64, horizon: int = 2) -> dict[str, np.ndarray]:
    """A rule a network can learn: push right (1) when the pole leans right (obs[2] > 0)."""
    obs = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    action = (obs[:, 2] > 0).astype(np.int32)
    return {
        "obs": obs,
        "action": np.repeat(action[:, None], horizon, 1),
        "action_is_pad": np.zeros((n, horizon), bool),
    }


def make(env_id: str, data: dict[str, np.ndarray]) -> BC:
    env, params = registry.make(env_id)
    horizon = data["action"].shape[1]
    cfg = BCConfig(data=DataConfig(dataset="unused", action_horizon=horizon, batch_size=32), encoder=SMALL)
    stats = {
        "obs": NormStats(data["obs"].mean(0), data["obs"].std(0)),
        "action": NormStats(np.atleast_1d(data["action"][:, 0].mean(0)), np.atleast_1d(data["action"][:, 0].std(0))),
    }
    return BC.make(cfg, env, params, env_id=env_id, data=data, norm_stats=stats)


def test_discrete_bc_learns_a_rule_and_acts_first_of_chunk():
    bc = make("CartPole-v1", cartpole_data())
    state = bc.init(jax.random.PRNGKey(0))
    step = jax.jit(bc.train_step)
    for _ in range(200):
        state, m = step(state)
    assert float(m.per_update["bc/accuracy"]) > 0.9
    obs = jnp.asarray([[0.0, 0.0, 0.3, 0.0], [0.0, 0.0, -0.3, 0.0]])
    chunk = bc.action_chunk(state.params, obs, jax.random.PRNGKey(1), greedy=True)
    assert chunk.shape == (2, 2) and chunk.dtype == jnp.int32
    np.testing.assert_array_equal(bc.act(state.params, obs, jax.random.PRNGKey(1), greedy=True), chunk[:, 0])
    np.testing.assert_array_equal(chunk[:, 0], [1, 0])


def test_padded_chunk_steps_do_not_count():
    data = cartpole_data(horizon=3)
    bc = make("CartPole-v1", data)
    state = bc.init(jax.random.PRNGKey(0))
    batch = {k: jnp.asarray(v) for k, v in data.items()}
    # The third step's labels flipped but padded: the loss is that of the first two steps alone.
    flipped = dict(batch, action=batch["action"].at[:, 2].set(1 - batch["action"][:, 2]))
    padded = dict(flipped, action_is_pad=batch["action_is_pad"].at[:, 2].set(True))
    unmasked = dict(batch, action_is_pad=batch["action_is_pad"].at[:, 2].set(True))
    loss = lambda b: float(bc_loss(bc, state.params.net, state.params, b)[0])  # noqa: E731
    assert loss(padded) == pytest.approx(loss(unmasked))


@pytest.mark.parametrize("loss", ["mse", "gaussian"])
def test_continuous_bc_normalises_and_unnormalises(loss: Literal["mse", "gaussian"]):
    rng = np.random.default_rng(1)
    obs = (rng.normal(size=(64, 3)) * [1.0, 1.0, 8.0]).astype(np.float32)
    action = np.clip(obs[:, 2:3] / 4.0, -2, 2).astype(np.float32)
    data = {"obs": obs, "action": action[:, None], "action_is_pad": np.zeros((64, 1), bool)}
    env, params = registry.make("Pendulum-v1")
    cfg = BCConfig(
        data=DataConfig(dataset="x", normalize=True, batch_size=32), encoder=SMALL, continuous_loss=loss, lr=3e-3
    )
    stats = {"obs": NormStats(obs.mean(0), obs.std(0)), "action": NormStats(action.mean(0), action.std(0))}
    bc = BC.make(cfg, env, params, env_id="Pendulum-v1", data=data, norm_stats=stats)
    state = bc.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(state.params.normalizer.action_scale, action.std(0), rtol=1e-6)
    step = jax.jit(bc.train_step)
    for _ in range(300):
        state, m = step(state)
    assert float(m.per_update["bc/mse"]) < 0.05 * float(action.var())
    predicted = bc.act(state.params, jnp.asarray(obs[:8]), jax.random.PRNGKey(0), greedy=True)
    assert predicted.shape == (8, 1)
    np.testing.assert_allclose(predicted, action[:8], atol=0.4)


def test_same_key_same_batches_and_params():
    bc = make("CartPole-v1", cartpole_data())
    a = bc.init(jax.random.PRNGKey(3))
    b = bc.init(jax.random.PRNGKey(3))
    step = jax.jit(bc.train_step)
    for _ in range(5):
        a, _ = step(a)
        b, _ = step(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_policy_record_without_data_has_the_same_params_shape_and_refuses_to_train():
    data = cartpole_data()
    trained = make("CartPole-v1", data)
    env, params = registry.make("CartPole-v1")
    policy = BC.make(trained.config, env, params, env_id="CartPole-v1")
    shapes = lambda s: jax.tree.map(lambda x: (x.shape, x.dtype), s.params)  # noqa: E731
    assert shapes(jax.eval_shape(policy.init, jax.random.PRNGKey(0))) == shapes(trained.init(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match=r"without in-memory data \(a policy record\)"):
        policy.train_step(policy.init(jax.random.PRNGKey(0)))


def test_transition_rows_skip_truncated_ends():
    """``data.load``'s rule: the last frame of a truncated episode is no transition (no s' recorded)."""
    bc = make("CartPole-v1", dict(cartpole_data(8, 1), rows=np.asarray([1, 3], np.int32)))
    batch = bc.sample(jax.random.PRNGKey(0))
    picked = {tuple(r) for r in np.asarray(batch["obs"])}
    allowed = {tuple(r) for r in cartpole_data(8, 1)["obs"][[1, 3]]}
    assert picked <= allowed and offline_data.STATE_KEY == "observation.state"
