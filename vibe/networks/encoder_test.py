"""Tests for vibe.networks.encoder: float conversion of compact observations, the mlp torso on images,
and ``check_observation``'s one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.envs import spaces
from vibe.networks import encoder
from vibe.networks.config import CNNConfig, EncoderConfig, ViTConfig
from vibe.networks.mlp import MLP


def test_to_float_scales_uint8_to_unit_and_bool_to_zero_one():
    pixels = jnp.array([0, 51, 255], jnp.uint8)
    out = encoder.to_float(pixels)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0], rtol=1e-6)
    planes = encoder.to_float(jnp.array([True, False, True]))
    assert planes.dtype == jnp.float32
    np.testing.assert_array_equal(planes, [1.0, 0.0, 1.0])  # 0/1, not /255
    floats = encoder.to_float(jnp.array([-3.5, 2.0], jnp.bfloat16))
    assert floats.dtype == jnp.float32
    np.testing.assert_array_equal(floats, [-3.5, 2.0])  # unchanged


def test_mlp_encoder_flattens_an_image():
    config = EncoderConfig(kind="mlp", hidden_sizes=(8,), activation="relu")
    net = encoder.Encoder(config, obs_ndim=3)
    images = jax.random.randint(jax.random.PRNGKey(0), (2, 3, 5, 5, 3), 0, 256).astype(jnp.uint8)  # [t, n, h, w, c]
    params = net.init(jax.random.PRNGKey(1), images[0, 0])
    assert sum(x.size for x in jax.tree.leaves(params)) == 5 * 5 * 3 * 8 + 8
    features = net.apply(params, images)
    assert features.shape == (2, 3, 8) and features.dtype == jnp.float32
    # The same as an MLP on the flattened pixels scaled to [0, 1].
    flat = images.reshape(2, 3, 75).astype(jnp.float32) / 255.0
    expected = MLP((8,), "relu").apply({"params": params["params"]["MLP_0"]}, flat)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_cnn_encoder_keeps_the_leading_axes():
    config = EncoderConfig(kind="cnn", hidden_sizes=(8,), activation="relu", cnn=CNNConfig(channels=(4,)))
    net = encoder.Encoder(config, obs_ndim=3)
    planes = jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, (4, 2, 10, 10, 4))
    params = net.init(jax.random.PRNGKey(1), planes[0, 0])
    features = net.apply(params, planes)
    assert features.shape == (4, 2, 8)
    np.testing.assert_allclose(net.apply(params, planes[1, 0]), features[1, 0], rtol=1e-5, atol=1e-6)
    # bool planes read as 0/1 floats
    np.testing.assert_allclose(net.apply(params, planes.astype(jnp.float32)), features, rtol=1e-6)


CARTPOLE_OBS = spaces.Box(-np.inf, np.inf, (4,))


def test_check_observation_lets_an_mlp_read_anything():
    for space in (CARTPOLE_OBS, spaces.Image(10, 10, 4, bool), spaces.Image(84, 84, 3)):
        encoder.check_observation(EncoderConfig(kind="mlp"), space, "some-env")


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_check_observation_rejects_an_image_torso_on_flat_observations_in_one_line(kind):
    with pytest.raises(ValueError) as error:
        encoder.check_observation(EncoderConfig(kind=kind), CARTPOLE_OBS, "CartPole-v1")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("env CartPole-v1 observes ")  # the env
    assert repr(CARTPOLE_OBS) in message and "(4,)" in message  # the space
    assert f"the {kind} encoder cannot read" in message
    assert message.endswith("pass --algo.encoder.kind mlp")  # the flag


def test_check_observation_accepts_images_for_cnn_and_tiling_vit_patches():
    image = spaces.Image(10, 10, 4, bool)
    encoder.check_observation(EncoderConfig(kind="cnn"), image, "Breakout-MinAtar")
    encoder.check_observation(EncoderConfig(kind="vit", vit=ViTConfig(patch_size=5)), image, "Breakout-MinAtar")


def test_check_observation_rejects_vit_patches_that_do_not_tile_the_image():
    config = EncoderConfig(kind="vit", vit=ViTConfig(patch_size=4))
    with pytest.raises(ValueError) as error:
        encoder.check_observation(config, spaces.Image(10, 10, 4, bool), "Breakout-MinAtar")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("env Breakout-MinAtar observes 10x10 images, which 4x4 patches do not tile")
    assert "--algo.encoder.vit.patch-size" in message and message.endswith("--algo.encoder.kind cnn")


def test_check_observation_names_the_flag_it_is_given():
    with pytest.raises(ValueError, match=r"pass --policy\.encoder\.kind mlp$"):
        encoder.check_observation(EncoderConfig(kind="cnn"), CARTPOLE_OBS, "x", flag="--policy.encoder.kind")
