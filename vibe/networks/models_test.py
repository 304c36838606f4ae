"""Tests for vibe.networks.models: the parameter counts of every preset's networks, init gains, the
actor-critic's separate methods, Q-networks, SAC's actor and twin critics, image inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.networks import heads, models
from vibe.networks.config import MINATAR_CNN, CNNConfig, EncoderConfig

TANH = EncoderConfig(activation="tanh")  # PPOConfig's default encoder: 64-64 tanh mlp
RELU = EncoderConfig(activation="relu")  # SACConfig's: 64-64 relu mlp
DQN_RELU = EncoderConfig(hidden_sizes=(128, 128), activation="relu")  # DQNConfig's: 128-128 relu mlp
PENDULUM_TORQUE = (np.float32([-2.0]), np.float32([2.0]))
PIXEL_CARTPOLE = EncoderConfig(
    kind="cnn",
    hidden_sizes=(64,),
    activation="relu",
    cnn=CNNConfig(channels=(16, 32), kernel_sizes=(4, 3), strides=(4, 2)),
)  # pixel_cartpole_ppo's
PIXELS = jnp.zeros((32, 64, 4), jnp.uint8)  # its 32x64 crop, 4 gray frames
BREAKOUT_CNN = EncoderConfig(
    kind="cnn", hidden_sizes=(64,), activation="relu", cnn=MINATAR_CNN
)  # breakout_minatar_ppo's


def _count(params: object) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _init(module, *inputs):
    """The parameter shapes only (``eval_shape``: nothing is computed)."""
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)


# Each preset's networks, built from the configs the preset holds (obs and action sizes from the env):
# (preset, module, example inputs, hand-derived count).
PRESET_NETWORKS = [
    # CartPole obs 4, 2 actions. Actor 4→64→64→2: (4*64+64) + (64*64+64) + (64*2+2) = 320 + 4160 + 130
    # = 4610; critic 4→64→64→1: 320 + 4160 + 65 = 4545. Total 9155.
    ("cartpole_ppo", models.ActorCritic(TANH, heads.Categorical(2)), (jnp.zeros(4),), 9155),
    # Acrobot obs 6, 3 actions. Actor (6*64+64) + 4160 + (64*3+3) = 448 + 4160 + 195 = 4803; critic
    # 448 + 4160 + 65 = 4673. Total 9476.
    ("acrobot_ppo", models.ActorCritic(TANH, heads.Categorical(3)), (jnp.zeros(6),), 9476),
    # Pendulum obs 3, one torque. Actor (3*64+64) + 4160 + (64*1+1) = 256 + 4160 + 65 = 4481, plus one
    # log-std; critic 4481. Total 8963.
    ("pendulum_ppo", models.ActorCritic(TANH, heads.Gaussian(1)), (jnp.zeros(3),), 8963),
    # CartPole Q-network 4→128→128→2 (relu): (4*128+128) + (128*128+128) + (128*2+2) = 640 + 16512 + 258 = 17410.
    ("cartpole_dqn", models.QNetwork(DQN_RELU, 2), (jnp.zeros(4),), 17_410),
    # The debug preset's 32-32 PPO on CartPole. Actor (4*32+32) + (32*32+32) + (32*2+2) = 160 + 1056 + 66
    # = 1282; critic 160 + 1056 + 33 = 1249. Total 2531.
    ("debug", models.ActorCritic(EncoderConfig(hidden_sizes=(32, 32)), heads.Categorical(2)), (jnp.zeros(4),), 2531),
    # PixelCartPole cropped to 32x64, grayscale, 4 frames: [32, 64, 4]. Each torso: conv 4x4x4x16 + 16 = 1,040 (stride
    # 4, to 8x16), conv 3x3x16x32 + 32 = 4,640 (to 4x8), Dense 4*8*32 = 1024 -> 64: 65,600; 71,280 in all. Actor
    # + 64*2+2 = 71,410; critic + 65 = 71,345. Total 142,755.
    ("pixel_cartpole_ppo", models.ActorCritic(PIXEL_CARTPOLE, heads.Categorical(2), 3), (PIXELS,), 142_755),
    # Breakout-MinAtar [10, 10, 4], 3 actions, one torso under both heads (shared_encoder): conv 3x3x4x16 + 16
    # = 592 (SAME, 10x10), Dense 10*10*16 = 1600 -> 64: 102,464; torso 103,056. Policy head 64*3+3 = 195, value
    # head 65. Total 103,316 (separate torsos: 206,372).
    (
        "breakout_minatar_ppo",
        models.ActorCritic(BREAKOUT_CNN, heads.Categorical(3), 3, shared=True),
        (jnp.zeros((10, 10, 4), jnp.bool_),),
        103_316,
    ),
]


@pytest.mark.parametrize(
    ("preset", "module", "inputs", "expected"), PRESET_NETWORKS, ids=[p[0] for p in PRESET_NETWORKS]
)
def test_preset_parameter_counts(preset, module, inputs, expected):
    assert _count(_init(module, *inputs)) == expected, preset


def test_pendulum_sac_parameter_count():
    # Actor 3→64→64→(mean, log_std): (3*64+64) + (64*64+64) + (64*2+2) = 256 + 4160 + 130 = 4546.
    # Twin critics, each [obs; action] 4→64→64→1: 2 * (320 + 4160 + 65) = 9090. With log(alpha): 13637.
    actor = _init(models.Actor(RELU, heads.TanhGaussian(*PENDULUM_TORQUE)), jnp.zeros(3))
    critic = _init(models.TwinCritic(RELU), jnp.zeros(3), jnp.zeros(1))
    assert _count(actor) == 4546 and _count(critic) == 9090
    assert _count(actor) + _count(critic) + 1 == 13637


def test_actor_critic_splits_the_counts_between_actor_and_critic():
    params = _init(models.ActorCritic(TANH, heads.Categorical(2)), jnp.zeros(4))["params"]
    assert _count(params["actor"]) + _count(params["policy_head"]) == 4610
    assert _count(params["critic"]) + _count(params["value_head"]) == 4545
    # Pendulum: the actor's 4481 plus one learned log-std per action feature; the critic 4481.
    params = _init(models.ActorCritic(TANH, heads.Gaussian(1)), jnp.zeros(3))["params"]
    assert params["policy_head"]["_LogStd_0"]["log_std"].shape == (1,)
    assert _count(params["actor"]) + _count(params["policy_head"]) == 4481 + 1
    assert _count(params["critic"]) + _count(params["value_head"]) == 4481


def test_actor_critic_heads_have_their_orthogonal_gains():
    net = models.ActorCritic(TANH, heads.Categorical(2))
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((4,)))["params"]
    policy_head = np.asarray(params["policy_head"]["Dense_0"]["kernel"])  # [64, 2]
    value_head = np.asarray(params["value_head"]["kernel"])  # [64, 1]
    hidden = np.asarray(params["actor"]["MLP_0"]["Dense_1"]["kernel"])  # [64, 64]
    # Orthogonal columns scaled by the gain: W^T W = gain^2 I.
    np.testing.assert_allclose(policy_head.T @ policy_head, 0.01**2 * np.eye(2), atol=1e-8)
    np.testing.assert_allclose(value_head.T @ value_head, np.eye(1), atol=1e-5)
    np.testing.assert_allclose(hidden.T @ hidden, 2.0 * np.eye(64), atol=1e-4)
    assert not np.asarray(params["value_head"]["bias"]).any()


def test_actor_critic_methods_match_call():
    net = models.ActorCritic(EncoderConfig(hidden_sizes=(8,)), heads.Categorical(3))
    obs = jax.random.normal(jax.random.PRNGKey(2), (2, 6))
    params = net.init(jax.random.PRNGKey(0), obs)
    logits, value = net.apply(params, obs)
    assert logits.shape == (2, 3) and value.shape == (2,)
    np.testing.assert_array_equal(net.apply(params, obs, method="policy"), logits)
    np.testing.assert_array_equal(net.apply(params, obs, method="value"), value)
    # Separate torsos: the critic's first layer is not the actor's.
    p = params["params"]
    assert not np.allclose(p["actor"]["MLP_0"]["Dense_0"]["kernel"], p["critic"]["MLP_0"]["Dense_0"]["kernel"])
    # Any leading axes, e.g. a rollout's [t, n].
    assert net.apply(params, jnp.zeros((5, 2, 6)), method="value").shape == (5, 2)


def test_shared_actor_critic_runs_one_torso_under_both_heads():
    net = models.ActorCritic(EncoderConfig(hidden_sizes=(8,)), heads.Categorical(3), shared=True)
    obs = jax.random.normal(jax.random.PRNGKey(2), (2, 6))
    params = net.init(jax.random.PRNGKey(0), obs)
    assert sorted(params["params"]) == ["actor", "policy_head", "value_head"]
    logits, value = net.apply(params, obs)
    np.testing.assert_array_equal(net.apply(params, obs, method="policy"), logits)
    np.testing.assert_array_equal(net.apply(params, obs, method="value"), value)
    # The value is the value head on the actor's features.
    features = net.apply(params, obs, method=lambda m, o: m.actor(o))
    head = params["params"]["value_head"]
    np.testing.assert_allclose(value, features @ head["kernel"][:, 0] + head["bias"][0], rtol=1e-6)


def test_gaussian_actor_critic_outputs_and_state_independent_log_std():
    net = models.ActorCritic(EncoderConfig(hidden_sizes=(8,)), heads.Gaussian(2, init_log_std=-0.5))
    obs = jax.random.normal(jax.random.PRNGKey(2), (3, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    np.testing.assert_array_equal(params["params"]["policy_head"]["_LogStd_0"]["log_std"], [-0.5, -0.5])
    (mean, log_std), value = net.apply(params, obs)
    assert mean.shape == (3, 2) and value.shape == (3,)
    np.testing.assert_array_equal(log_std, np.full((3, 2), -0.5, np.float32))  # the same for every state
    # The 0.01-gain head keeps initial means near 0 (|mean| <= 0.01 * |hidden| <= 0.01 * sqrt(8)).
    assert np.abs(np.asarray(mean)).max() < 0.03
    policy_mean, _ = net.apply(params, obs, method="policy")
    np.testing.assert_array_equal(policy_mean, mean)
    np.testing.assert_array_equal(net.apply(params, obs, method="value"), value)


def test_q_network_outputs_one_value_per_action():
    net = models.QNetwork(EncoderConfig(hidden_sizes=(8,), activation="relu"), 3)
    obs = jax.random.normal(jax.random.PRNGKey(2), (5, 4))
    params = net.init(jax.random.PRNGKey(0), obs)
    q = net.apply(params, obs)
    assert q.shape == (5, 3)
    head = np.asarray(params["params"]["Dense_0"]["kernel"])  # [8, 3], orthogonal with gain 1
    np.testing.assert_allclose(head.T @ head, np.eye(3), atol=1e-5)


def test_sac_actor_and_independent_twin_critics():
    encoder = EncoderConfig(hidden_sizes=(32,), activation="relu")
    actor_params = models.Actor(encoder, heads.TanhGaussian(*PENDULUM_TORQUE)).init(jax.random.PRNGKey(0), jnp.zeros(3))
    critic = models.TwinCritic(encoder)
    critic_params = critic.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(1))
    assert _count(actor_params) == (3 * 32 + 32) + (32 * 2 + 2)  # 194: mean and log_std outputs
    assert _count(critic_params) == 2 * ((4 * 32 + 32) + (32 + 1))  # 386: two Q(obs, action) MLPs
    kernel = critic_params["params"]["VmapMLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1])
    q = critic.apply(critic_params, jnp.ones((5, 3)), jnp.ones((5, 1)))
    assert q.shape == (2, 5) and not np.allclose(q[0], q[1])


def test_sac_networks_use_the_torch_default_init():
    # Uniform with variance 1/(3 fan_in): bounds +-1/sqrt(fan_in), as the SB3/CleanRL baselines.
    encoder = EncoderConfig(hidden_sizes=(256,), activation="relu")
    params = models.Actor(encoder, heads.TanhGaussian(*PENDULUM_TORQUE)).init(jax.random.PRNGKey(0), jnp.zeros(3))
    hidden = np.asarray(params["params"]["Encoder_0"]["MLP_0"]["Dense_0"]["kernel"])  # [3, 256]
    out = np.asarray(params["params"]["Dense_0"]["kernel"])  # [256, 2]
    assert np.abs(hidden).max() <= 1 / np.sqrt(3) and np.abs(hidden).max() > 0.9 / np.sqrt(3)
    assert np.abs(out).max() <= 1 / np.sqrt(256) and np.abs(out).max() > 0.9 / np.sqrt(256)


def test_actor_critic_reads_images_through_a_cnn():
    # MinAtar-size bool planes: CNN torso, then the dense layers, for both actor and critic.
    encoder = EncoderConfig(kind="cnn", hidden_sizes=(16,), activation="relu", cnn=CNNConfig(channels=(4,)))
    net = models.ActorCritic(encoder, heads.Categorical(3), obs_ndim=3)
    obs = jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (5, 2, 10, 10, 4))  # [t, n, h, w, c]
    params = net.init(jax.random.PRNGKey(1), obs[0, 0])
    logits, value = net.apply(params, obs)
    assert logits.shape == (5, 2, 3) and value.shape == (5, 2)
    # conv 3x3x4→4 (+4), then 10*10*4→16 (+16), per torso; policy 16→3, value 16→1.
    per_torso = (3 * 3 * 4 * 4 + 4) + (400 * 16 + 16)
    assert _count(params) == 2 * per_torso + (16 * 3 + 3) + (16 + 1)
    # The leading axes only batch: one observation gives the same output alone.
    np.testing.assert_allclose(net.apply(params, obs[3, 1], method="value"), value[3, 1], rtol=1e-5)
