import importlib.util

import numpy as np
import pytest

from vibe.data import transforms as T
from vibe.data.normalize import NormStats

STATS = {
    "state": NormStats(
        mean=np.array([1.0, 2.0]), std=np.array([2.0, 0.0]), q01=np.array([0.0, 1.0]), q99=np.array([10.0, 1.0])
    )
}


def test_repack_picks_renames_and_drops():
    sample = {"observation.state": np.ones(2), "action": np.zeros((3, 1)), "action_is_pad": np.zeros(3, bool)}
    out = T.Repack({"state": "observation.state", "nested": {"actions": "action"}})(sample)
    assert set(out) == {"state", "nested"} and set(out["nested"]) == {"actions"}
    assert out["nested"]["actions"] is sample["action"]
    with pytest.raises(KeyError, match="source key 'actions'"):
        T.Repack({"a": "actions"})(sample)


def test_group_push_order():
    def tag(name):
        return lambda data: {**data, "trace": [*data["trace"], name]}

    group = T.Group(inputs=[tag("repack")], outputs=[tag("unrepack")])
    group = group.push(inputs=[tag("normalize")], outputs=[tag("unnormalize")])
    assert T.compose(group.inputs)({"trace": []})["trace"] == ["repack", "normalize"]
    assert T.compose(group.outputs)({"trace": []})["trace"] == ["unnormalize", "unrepack"]


def test_zscore_golden_values_and_constant_dimension():
    x = np.array([3.0, 5.0, 7.0], np.float32)  # the third entry has no stats (padding): passes through
    out = T.Normalize(STATS)({"state": x})["state"]
    np.testing.assert_allclose(out, [2.0 / (2.0 + 1e-6), 3.0, 7.0], rtol=1e-7)
    assert out.dtype == np.float32
    np.testing.assert_allclose(T.Unnormalize(STATS)({"state": out})["state"], x, rtol=1e-6)
    np.testing.assert_array_equal(x, [3.0, 5.0, 7.0])  # input untouched


def test_quantile_golden_values_and_identity():
    q = T.Normalize(STATS, use_quantiles=True)
    out = q({"state": np.array([[0.0, 1.0], [10.0, 1.0], [5.0, 1.0]])})["state"]
    np.testing.assert_allclose(out[:, 0], [-1.0, 10 / (10 + 1e-6) * 2 - 1, 5 / (10 + 1e-6) * 2 - 1])
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 0.0])  # constant dimension maps to 0, not -1
    x = np.random.default_rng(0).normal(size=(50, 2)) * 4
    back = T.Unnormalize(STATS, use_quantiles=True)(q({"state": x}))["state"]
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12)


def test_normalize_errors_and_strictness():
    assert list(T.Normalize(STATS)({"other": np.ones(2)})) == ["other"]
    with pytest.raises(KeyError, match="stats key 'state' not in the sample"):
        T.Normalize(STATS, strict=True)({"other": np.ones(2)})
    with pytest.raises(KeyError, match="Unnormalize: stats key 'state'"):
        T.Unnormalize(STATS)({"other": np.ones(2)})
    no_quantiles = {"state": NormStats(mean=np.zeros(2), std=np.ones(2))}
    with pytest.raises(ValueError, match="Key state is missing q01 or q99"):
        T.Normalize(no_quantiles, use_quantiles=True)({"state": np.ones(2)})


def test_nested_keys_match_by_path():
    out = T.Normalize({"obs/state": STATS["state"]})({"obs": {"state": np.array([1.0, 2.0])}, "x": 1})
    np.testing.assert_allclose(out["obs"]["state"], [0.0, 0.0])
    assert out["x"] == 1


def test_pad_states_and_actions():
    out = T.PadStatesAndActions(4)({"observation.state": np.ones(3), "action": np.ones((2, 2)), "other": 1})
    np.testing.assert_array_equal(out["observation.state"], [1, 1, 1, 0])
    np.testing.assert_array_equal(out["action"], [[1, 1, 0, 0], [1, 1, 0, 0]])
    long = np.ones(6)
    assert T.PadStatesAndActions(4)({"observation.state": long})["observation.state"] is long


def test_delta_and_absolute_actions():
    assert T.make_bool_mask(2, -1, 1) == (True, True, False, True)
    state = np.array([1.0, 2.0, 3.0])
    actions = np.array([[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]])  # [H, a]
    sample = {"observation.state": state, "action": actions}
    delta = T.DeltaActions(mask=(True, False))(sample)
    np.testing.assert_array_equal(delta["action"], [[1.0, 3.0, 4.0], [4.0, 6.0, 7.0]])
    np.testing.assert_array_equal(sample["action"], [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]])  # input untouched
    back = T.AbsoluteActions(mask=(True, False))(delta)
    np.testing.assert_array_equal(back["action"], actions)
    assert T.DeltaActions(mask=None)(sample) is sample
    assert T.DeltaActions(mask=(True,))({"observation.state": state}) == {"observation.state": state}


@pytest.mark.skipif(
    importlib.util.find_spec("vibe.envs.image") is None, reason="vibe.envs.image.resize_with_pad has not landed yet"
)
def test_resize_images_keeps_aspect_and_pads():
    image = np.full((4, 8, 3), 200, np.uint8)
    out = T.ResizeImages(8, 8)({"observation.image": image, "action": np.zeros(2)})
    assert out["observation.image"].shape == (8, 8, 3) and out["observation.image"].dtype == np.uint8
    assert out["observation.image"][0].max() == 0 and out["observation.image"][4, 4, 0] == 200  # padded rows are 0
    with pytest.raises(KeyError, match=r"image key 'observation\.image'"):
        T.ResizeImages(8, 8)({"action": np.zeros(2)})
