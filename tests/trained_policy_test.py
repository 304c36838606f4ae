"""create_trained_policy on runs the train command wrote: the checkpoint alone gives the training greedy actions."""

import dataclasses
import shutil

import jax
import numpy as np
import pytest

from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.sac.config import SACConfig
from vibe.config.train_config import TrainConfig
from vibe.networks.config import EncoderConfig
from vibe.policies.trained import create_trained_policy
from vibe.scripts import training
from vibe.train.config import RunnerConfig

SMALL = EncoderConfig(hidden_sizes=(16, 16))
RUNS = {
    # Normalised observations: the policy must apply the run's statistics, read from the assets.
    "ppo": ("CartPole-v1", PPOConfig(num_envs=2, num_steps=8, total_timesteps=64, normalize_obs=True, encoder=SMALL)),
    "dqn": ("CartPole-v1", DQNConfig(num_envs=2, total_timesteps=64, learning_starts=16, batch_size=8, encoder=SMALL)),
    "sac": ("Pendulum-v1", SACConfig(num_envs=2, total_timesteps=32, learning_starts=8, batch_size=8, encoder=SMALL)),
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def trained(request, tmp_path_factory):
    env, algo = RUNS[request.param]
    out = tmp_path_factory.mktemp(request.param)
    runner = RunnerConfig(output_dir=str(out), eval_episodes=2, eval_every=2, wandb_mode="disabled")
    config = TrainConfig(name=request.param, env=env, algo=algo, runner=runner)
    result = training.train(config)
    return request.param, config, result


def test_policy_from_the_checkpoint_acts_as_the_training_state(trained):
    name, config, result = trained
    policy = create_trained_policy(result.run_dir, step="latest")
    algorithm = training.make_algorithm(config)
    space = algorithm.env.observation_space(algorithm.env_params)
    obs = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(3), 16)), np.float32)
    state = result.state
    # Jitted like the policy: XLA may fuse the eager and the jitted computation differently.
    act = jax.jit(
        lambda state, obs: algorithm.act(
            state.params, algorithm.policy_input(algorithm.obs_stats(state), obs), None, greedy=True
        )
    )
    want = act(state, obs)
    got = policy.infer_batch({"observation.state": obs})
    np.testing.assert_array_equal(got["actions"], np.asarray(want))
    one = policy.infer({"observation.state": obs[0]})
    # One observation is a batch of 1 for the network (a matmul of another shape: compare like with like).
    np.testing.assert_array_equal(one["actions"], np.asarray(act(state, obs[:1]))[0])
    assert one["policy_timing"]["infer_ms"] > 0
    meta = policy.metadata
    assert meta["observation"] == {"observation.state": {"shape": list(space.shape), "dtype": "float32"}}
    assert meta["algorithm"] == name and meta["step"] == algorithm.num_updates


def test_best_is_the_default_step(trained):
    _, _, result = trained
    from vibe.checkpoint import manager as checkpoints

    assert create_trained_policy(result.run_dir).metadata["step"] == checkpoints.best_step(result.run_dir)


def test_sampling_advances_its_key(trained):
    name, _, result = trained
    if name == "dqn":
        pytest.skip("DQN's non-greedy policy is epsilon-greedy with a small epsilon: repeats are likely")
    policy = create_trained_policy(result.run_dir, step="latest", greedy=False)
    obs = {"observation.state": np.zeros((8, *policy.metadata["observation"]["observation.state"]["shape"]), "f4")}
    assert not np.array_equal(policy.infer_batch(obs)["actions"], policy.infer_batch(obs)["actions"])


def test_a_directory_without_checkpoints_is_one_line(tmp_path, trained):
    with pytest.raises((FileNotFoundError, ValueError)) as info:
        create_trained_policy(str(tmp_path / "nothing"))
    assert "nothing" in str(info.value) and "\n" not in str(info.value)
    _, _, result = trained
    broken = tmp_path / "copy"
    shutil.copytree(result.run_dir, broken)
    with pytest.raises(ValueError, match="seed_index=3"):
        create_trained_policy(str(broken), step="latest", seed_index=3)
    assert dataclasses.is_dataclass(create_trained_policy(str(broken), step="latest"))
