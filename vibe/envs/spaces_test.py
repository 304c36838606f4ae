"""Tests for vibe.envs.spaces: bounds, sampling and membership."""

import json

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


def test_box_accepts_image_shaped_bounds_and_samples_them():
    space = spaces.Box(0.0, 1.0, (10, 10, 4))
    assert space.low.shape == (10, 10, 4) and space.bounded.all()
    sample = space.sample(jax.random.PRNGKey(0))
    assert sample.shape == (10, 10, 4) and bool(space.contains(sample))
    assert repr(space) == "Box(low=0.0, high=1.0, shape=(10, 10, 4), dtype=float32)"  # not 400 numbers
    varied = spaces.Box(np.arange(40.0).reshape(2, 20), 100.0, (2, 20))
    assert "\n" not in repr(varied) and "..." in repr(varied)  # one line, summarised


def test_image_bounds_follow_the_dtype():
    image = spaces.Image(64, 48, 3)
    assert (image.height, image.width, image.channels) == (64, 48, 3) and image.shape == (64, 48, 3)
    assert image.dtype == np.uint8 and int(image.low.min()) == 0 and int(image.high.max()) == 255
    assert isinstance(image, spaces.Box)
    binary = spaces.Image(10, 10, 4, dtype=bool)
    assert binary.dtype == np.bool_ and not binary.low.any() and binary.high.all()
    signed = spaces.Image(8, 8, 1, dtype=np.float32)
    np.testing.assert_array_equal([signed.low.min(), signed.high.max()], [-1.0, 1.0])
    unit = spaces.Image(8, 8, 1, dtype=np.float32, low=0.0)
    np.testing.assert_array_equal([unit.low.min(), unit.high.max()], [0.0, 1.0])
    assert repr(unit) == "Image(8, 8, 1, dtype=float32, low=0.0)"


def test_image_is_never_equal_to_a_box_with_the_same_bounds():
    image = spaces.Image(4, 4, 3)
    box = spaces.Box(0, 255, (4, 4, 3), np.uint8)
    assert image != box and box != image
    assert image == spaces.Image(4, 4, 3) and hash(image) == hash(spaces.Image(4, 4, 3))
    assert image != spaces.Image(4, 4, 3, dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.float32])
def test_image_samples_are_contained(dtype):
    image = spaces.Image(6, 5, 2, dtype=dtype)
    samples = np.asarray(jax.vmap(image.sample)(jax.random.split(jax.random.PRNGKey(0), 64)))
    assert samples.shape == (64, 6, 5, 2) and samples.dtype == dtype
    assert all(bool(image.contains(s)) for s in samples[:4])
    assert len(np.unique(samples)) > 1  # really random


def test_image_contains_checks_dtype_shape_and_range():
    image = spaces.Image(2, 2, 1, dtype=np.float32)
    assert bool(image.contains(np.zeros((2, 2, 1), np.float32)))
    assert not bool(image.contains(np.zeros((2, 2, 1), np.uint8)))  # wrong dtype
    assert not bool(image.contains(np.zeros((2, 2, 2), np.float32)))
    assert not bool(image.contains(np.full((2, 2, 1), 1.5, np.float32)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 0, "width": 4, "channels": 3}, r"Image\.height must be a positive int, got 0"),
        ({"height": 4, "width": 4, "channels": 3, "dtype": np.int32}, r"Image\.dtype must be uint8, bool or a float"),
        ({"height": 4, "width": 4, "channels": 3, "dtype": np.float32, "low": 0.5}, r"Image\.low for float images"),
        ({"height": 4, "width": 4, "channels": 3, "low": 0.0}, r"Image\.low is only for float images"),
    ],
)
def test_image_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        spaces.Image(**kwargs)


_BIG = float(np.finfo(np.float32).max)
ROUND_TRIP = [
    spaces.Discrete(3),
    spaces.Box(-2.0, 2.0, (1,)),
    spaces.Box(np.array([-4.8, -_BIG]), np.array([4.8, _BIG]), (2,)),  # CartPole's float32.max bounds
    spaces.Box(-np.inf, np.inf, (3, 2)),
    spaces.Box(np.array([0.0, -np.inf]), np.array([np.inf, 1.0]), (2,), np.float64),
    spaces.Box(0, 5, (2, 2), np.int32),
    spaces.Box(0.0, 1.0, (10, 10, 4)),
    spaces.Image(64, 64, 3),
    spaces.Image(10, 10, 7, dtype=bool),
    spaces.Image(8, 8, 1, dtype=np.float32),
    spaces.Image(8, 8, 1, dtype=np.float32, low=0.0),
]


@pytest.mark.parametrize("space", ROUND_TRIP, ids=repr)
def test_spaces_round_trip_through_strict_json(space):
    text = json.dumps(spaces.space_to_json(space), allow_nan=False)  # strict JSON: no bare inf/nan
    restored = spaces.space_from_json(json.loads(text))
    assert restored == space and type(restored) is type(space)
    if isinstance(space, spaces.Box):
        np.testing.assert_array_equal(restored.high, space.high)  # bit for bit, float32.max included


def test_space_json_layout():
    assert spaces.space_to_json(spaces.Box(-np.inf, 1.0, (2,))) == {
        "kind": "box",
        "shape": [2],
        "dtype": "float32",
        "low": "-inf",
        "high": 1.0,
    }
    assert spaces.space_to_json(spaces.Image(10, 10, 4, dtype=bool)) == {
        "kind": "image",
        "shape": [10, 10, 4],
        "dtype": "bool",
        "low": False,
        "high": True,
    }
    assert spaces.space_to_json(spaces.Discrete(2))["n"] == 2


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ([1, 2], "must be a dict"),
        ({"n": 2}, "'kind'"),
        ({"kind": "tuple"}, "'kind'"),
        ({"kind": "discrete"}, "'n'"),
        ({"kind": "discrete", "n": "2"}, "'n'"),
        ({"kind": "box", "dtype": "float32", "low": 0, "high": 1}, "'shape'"),
        ({"kind": "box", "shape": [2], "low": 0, "high": 1}, "'dtype'"),
        ({"kind": "box", "shape": [2], "dtype": "float99", "low": 0, "high": 1}, "'dtype'"),
        ({"kind": "box", "shape": [2], "dtype": "float32", "high": 1}, "'low'"),
        ({"kind": "box", "shape": [2], "dtype": "float32", "low": "infinity", "high": 1}, "'low'"),
        ({"kind": "box", "shape": [2], "dtype": "float32", "low": [0, 0, 0], "high": 1}, "'low'/'high'"),
        ({"kind": "image", "shape": [4, 4], "dtype": "uint8", "low": 0, "high": 255}, "'shape'"),
        ({"kind": "image", "shape": [4, 4, 3], "dtype": "uint8", "low": 0, "high": 128}, "'low'/'high'"),
    ],
)
def test_malformed_space_json_names_the_field(d, field):
    with pytest.raises(ValueError, match=field):
        spaces.space_from_json(d)
