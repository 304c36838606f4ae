"""Tests for vibe.core.types: the records are pytrees that survive jit, vmap and tree_map."""

import jax
import jax.numpy as jnp
import numpy as np

from vibe.core.types import TimeStep, Transition


def _timestep() -> TimeStep:
    return TimeStep(
        obs=jnp.arange(3.0),
        reward=jnp.asarray(1.5),
        terminated=jnp.asarray(False),
        truncated=jnp.asarray(True),
        info={"final_obs": jnp.ones(3)},
    )


def test_timestep_leaves_include_info():
    leaves = jax.tree.leaves(_timestep())
    assert len(leaves) == 5  # obs, reward, terminated, truncated, info["final_obs"]


def test_timestep_through_jit_keeps_fields():
    out = jax.jit(lambda ts: jax.tree.map(lambda x: x * 2, ts))(_timestep())
    assert isinstance(out, TimeStep)
    np.testing.assert_array_equal(out.obs, [0.0, 2.0, 4.0])
    assert float(out.reward) == 3.0
    np.testing.assert_array_equal(out.info["final_obs"], [2.0, 2.0, 2.0])


def test_transition_vmaps_over_leading_axis():
    n = 2
    transition = Transition(
        obs=jnp.zeros((n, 4)),
        action=jnp.array([0, 1]),
        reward=jnp.array([1.0, 2.0]),
        terminated=jnp.array([False, True]),
        truncated=jnp.array([False, False]),
        next_obs=jnp.ones((n, 4)),
        log_prob=jnp.array([-0.5, -0.7]),
        value=jnp.array([0.1, 0.2]),
    )
    summed = jax.vmap(lambda t: t.reward + t.next_obs.sum() + t.action)(transition)
    np.testing.assert_allclose(summed, [5.0, 7.0])
