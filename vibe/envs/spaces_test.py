"""Tests for vibe.envs.spaces: bounds, sampling and membership."""

import jax
import numpy as np
import pytest

from vibe.envs import spaces


def test_discrete_samples_cover_all_values_in_range():
    space = spaces.Discrete(3)
    samples = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(0), 200)))
    assert samples.dtype == np.int32
    assert set(samples.tolist()) == {0, 1, 2}


def test_discrete_contains():
    space = spaces.Discrete(2)
    assert bool(space.contains(1))
    assert not bool(space.contains(2))
    assert not bool(space.contains(-1))
    assert not bool(space.contains(np.array([0, 1])))


def test_discrete_rejects_non_positive_n():
    with pytest.raises(ValueError, match=r"Discrete\.n must be a positive int, got 0"):
        spaces.Discrete(0)


def test_box_broadcasts_scalar_bounds():
    space = spaces.Box(-2.0, 2.0, (1,))
    np.testing.assert_array_equal(space.low, [-2.0])
    np.testing.assert_array_equal(space.high, [2.0])
    assert space.dtype == np.float32
    assert space == spaces.Box(np.array([-2.0]), np.array([2.0]), (1,))
    assert hash(space) == hash(spaces.Box(np.array([-2.0]), np.array([2.0]), (1,)))
    assert space != spaces.Box(-1.0, 1.0, (1,))


def test_box_samples_within_bounds_and_use_the_range():
    space = spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 0.5]), (2,))
    samples = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(1), 500)))
    assert samples.shape == (500, 2)
    assert np.all(samples >= space.low) and np.all(samples <= space.high)
    assert samples[:, 0].min() < -1.5 and samples[:, 0].max() > 1.5  # really spans [-2, 2]


def test_box_with_float32_max_bounds_samples_finite_values():
    big = np.finfo(np.float32).max
    space = spaces.Box(np.array([-4.8, -big]), np.array([4.8, big]), (2,))
    np.testing.assert_array_equal(space.bounded, [True, False])
    samples = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(2), 100)))
    assert np.all(np.isfinite(samples))
    assert np.all(np.abs(samples[:, 0]) <= 4.8)


def test_box_contains_checks_bounds_and_shape():
    space = spaces.Box(-1.0, 1.0, (2,))
    assert bool(space.contains(np.array([0.5, -1.0])))
    assert not bool(space.contains(np.array([0.5, 1.5])))
    assert not bool(space.contains(np.array([0.5])))


def test_box_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="low <= high"):
        spaces.Box(1.0, -1.0, (1,))
