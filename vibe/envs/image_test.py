"""Golden tests for vibe.envs.image: resize_with_pad against PIL's bilinear resize, luma, [-1, 1] scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from vibe.envs import image


def _random_uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _pil_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference: PIL's bilinear resize (antialiased when shrinking, like jax.image.resize)."""
    return np.asarray(PIL.Image.fromarray(img).resize((width, height), PIL.Image.BILINEAR))


@pytest.mark.parametrize(
    ("in_shape", "out_shape", "content", "offset"),
    [
        ((16, 24), (48, 48), (32, 48), (8, 0)),  # upsample, letterboxed top/bottom
        ((64, 48), (32, 32), (32, 24), (0, 4)),  # downsample, pillarboxed left/right
        ((256, 320), (60, 80), (60, 75), (0, 2)),  # openpi's odd padding: 5 columns, 2 left and 3 right
        ((7, 5), (21, 30), (21, 15), (0, 7)),  # odd everything: 15 columns, 7 left and 8 right
    ],
)
def test_resize_with_pad_keeps_aspect_ratio_and_matches_pil(in_shape, out_shape, content, offset):
    img = _random_uint8((*in_shape, 3))
    out = np.asarray(jax.jit(image.resize_with_pad, static_argnums=(1, 2))(img, *out_shape))
    assert out.shape == (*out_shape, 3) and out.dtype == np.uint8
    assert image.resized_shape(*in_shape, *out_shape) == content
    (top, left), (h, w) = offset, content
    inside = np.zeros(out_shape, bool)
    inside[top : top + h, left : left + w] = True
    assert np.all(out[~inside] == 0)  # the pad region is exactly the pad value
    # The extra pad pixel goes to the bottom/right.
    assert out_shape[0] - (top + h) - top in (0, 1) and out_shape[1] - (left + w) - left in (0, 1)
    reference = _pil_resize(img, h, w)
    diff = np.abs(out[top : top + h, left : left + w].astype(int) - reference.astype(int))
    assert diff.max() <= 1


def test_resize_with_pad_hand_computed_upsample():
    # [0, 100] -> 4 wide: pixel centres at -0.25, 0.25, 0.75, 1.25 of the input; the edges clamp.
    img = np.array([[[0], [100]]], np.uint8)  # [1, 2, 1]
    out = np.asarray(image.resize_with_pad(img, 4, 4))[..., 0]
    np.testing.assert_array_equal(out, [[0, 0, 0, 0], [0, 25, 75, 100], [0, 25, 75, 100], [0, 0, 0, 0]])


def test_resize_with_pad_same_size_is_the_identity():
    img = _random_uint8((2, 12, 10, 3))
    np.testing.assert_array_equal(np.asarray(image.resize_with_pad(img, 12, 10)), img)


def test_resize_with_pad_keeps_leading_axes_and_accepts_jnp():
    img = jnp.asarray(_random_uint8((2, 3, 20, 40, 1)))
    out = image.resize_with_pad(img, 16, 16)
    assert out.shape == (2, 3, 16, 16, 1)
    # Within 1: XLA may vectorise the batched float resize differently, so a value at .5 can round either way
    # (1 of 256 pixels on one Intel Xeon).
    alone = np.asarray(image.resize_with_pad(img[1, 2], 16, 16)).astype(np.int16)
    np.testing.assert_allclose(np.asarray(out[1, 2]).astype(np.int16), alone, atol=1, rtol=0)


def test_resize_with_pad_clips_floats_and_pads_with_minus_one():
    img = np.linspace(-2.0, 2.0, 4 * 8, dtype=np.float32).reshape(4, 8, 1)
    out = np.asarray(image.resize_with_pad(img, 8, 8))
    assert out.dtype == np.float32
    assert out.min() == -1.0 and out.max() == 1.0  # clipped to [-1, 1]
    np.testing.assert_array_equal(out[:2], -1.0)  # 2 pad rows on top, 2 at the bottom
    np.testing.assert_array_equal(out[6:], -1.0)
    assert np.any((out[2:6] > -1.0) & (out[2:6] < 1.0))
    np.testing.assert_array_equal(np.asarray(image.resize_with_pad(img, 4, 8)), np.clip(img, -1.0, 1.0))
    padded = np.asarray(image.resize_with_pad(img, 8, 8, pad_value=0.5))
    np.testing.assert_array_equal(padded[:2], 0.5)


def test_resize_with_pad_rounds_uint8_and_uses_a_custom_pad_value():
    img = np.array([[[0], [255]]], np.uint8)
    out = np.asarray(image.resize_with_pad(img, 2, 6, pad_value=7))[..., 0]
    # Content 2 x 4: [0, 64, 191, 255] (0.25 * 255 = 63.75 rounds to 64), one pad column either side.
    np.testing.assert_array_equal(out, [[7, 0, 64, 191, 255, 7]] * 2)


def test_resize_with_pad_rejects_other_dtypes():
    with pytest.raises(ValueError, match="unsupported image dtype int32"):
        image.resize_with_pad(np.zeros((4, 4, 1), np.int32), 2, 2)
    with pytest.raises(ValueError, match=r"\[\.\.\., h, w, c\]"):
        image.resize_with_pad(np.zeros((4, 4), np.uint8), 2, 2)


def test_grayscale_uses_bt601_weights():
    assert image.BT601_LUMA == (0.299, 0.587, 0.114)
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30]]], np.uint8)
    gray = np.asarray(image.grayscale(rgb))
    assert gray.shape == (1, 5, 1) and gray.dtype == np.uint8
    # 0.299 * 255 = 76.2, 0.587 * 255 = 149.7, 0.114 * 255 = 29.1; 2.99 + 11.74 + 3.42 = 18.15.
    np.testing.assert_array_equal(gray[0, :, 0], [76, 150, 29, 255, 18])
    np.testing.assert_array_equal(gray[0, :, 0], np.asarray(PIL.Image.fromarray(rgb).convert("L"))[0])
    floats = np.asarray(image.grayscale(np.array([[[1.0, -1.0, 0.5]]], np.float32)))
    np.testing.assert_allclose(floats, [[[0.299 - 0.587 + 0.057]]], rtol=1e-6)


def test_grayscale_needs_rgb():
    with pytest.raises(ValueError, match=r"RGB \[\.\.\., h, w, 3\]"):
        image.grayscale(np.zeros((4, 4, 4), np.uint8))


def test_invert_is_the_negative_for_each_dtype():
    np.testing.assert_array_equal(image.invert(np.array([0, 1, 128, 255], np.uint8)), [255, 254, 127, 0])
    np.testing.assert_array_equal(image.invert(np.array([True, False])), [False, True])
    np.testing.assert_allclose(image.invert(np.array([-1.0, 0.25, 1.0], np.float32), -1.0, 1.0), [1.0, -0.25, -1.0])
    np.testing.assert_allclose(image.invert(np.array([0.0, 0.25, 1.0], np.float32)), [1.0, 0.75, 0.0])
    assert image.invert(np.zeros(2, np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="unsupported image dtype int32"):
        image.invert(np.zeros(2, np.int32))


def test_to_signed_unit_endpoints():
    out = np.asarray(image.to_signed_unit(np.array([0, 255, 51], np.uint8)))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:2], [-1.0, 1.0])
    np.testing.assert_allclose(out[2], 51 / 255 * 2 - 1, rtol=1e-6)
    with pytest.raises(ValueError, match="expects uint8"):
        image.to_signed_unit(np.zeros(3, np.float32))


@pytest.mark.parametrize(
    ("in_hw", "out_hw"),
    [((64, 64), (32, 32)), ((84, 84), (28, 42)), ((30, 40), (10, 10)), ((64, 48), (48, 36)), ((5, 7), (12, 17))],
)
def test_resize_matches_jax_image_resize(in_hw, out_hw):
    """The stencil (integer shrink factors: 2, 3, 4) and matmul (any other factor) paths compute
    ``jax.image.resize``'s antialiased linear resize; float results agree to rounding, uint8 ones to 1."""
    img = _random_uint8((2, *in_hw, 3))
    floats = img.astype(np.float32) / 255
    content = image.resized_shape(*in_hw, *out_hw)
    expected = jax.image.resize(floats, (2, *content, 3), method="linear", antialias=True)
    top, left = (out_hw[0] - content[0]) // 2, (out_hw[1] - content[1]) // 2
    window = (slice(None), slice(top, top + content[0]), slice(left, left + content[1]))
    np.testing.assert_allclose(image.resize_with_pad(floats, *out_hw)[window], expected, atol=1e-5)
    uint8 = np.asarray(image.resize_with_pad(img, *out_hw))[window].astype(int)
    assert np.abs(uint8 - np.clip(np.round(np.asarray(expected) * 255), 0, 255)).max() <= 1
