"""What the offline algorithms (BC, IQL) share: the dataset as host arrays, its env, norm stats, the base record.

    env_id = dataset_env(config.data, "CartPole-v1")        # the env its vibe metadata names (evaluation)
    data, stats = load(config.data, env, env_params, env_id=env_id, owner="BC")   # numpy, checked
    bc = BC.make(config, env, env_params, env_id=env_id, data=data, norm_stats=stats)

``data`` is a dict of numpy arrays, one row per frame: ``obs [n, *obs]``, ``action [n, H, *act]``,
``action_is_pad [n, H]`` and, with ``transitions=True``, ``reward [n]``, ``terminated [n]`` (``next.done``:
a terminal state, no bootstrap), ``next_obs [n, *obs]`` (the next frame of the same episode; the frame
itself where there is none) and ``rows [m]`` int32: the frames that are transitions, i.e. all but the last
frame of an episode cut by a time limit (no s' was recorded after it). The runner puts ``data`` on the
devices once and passes it to every chunk as an argument (vibe/train/loop.py says why).
"""

import dataclasses
import json
import os
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms.bc.config import DataConfig
from vibe.core import typing as at
from vibe.data import normalize
from vibe.data.lerobot_reader import DatasetError, LeRobotReader, resolve_root
from vibe.data.lerobot_writer import read_vibe_metadata
from vibe.envs import evaluate as evaluation
from vibe.envs import spaces
from vibe.envs.env import Env

STATE_KEY, IMAGE_KEY, ACTION_KEY = "observation.state", "observation.image", "action"
REWARD_KEY, DONE_KEY, TRUNCATED_KEY = "next.reward", "next.done", "next.truncated"


def user_path(path: str) -> str:
    """``path`` relative to where the user ran the command (``BUILD_WORKING_DIRECTORY`` under ``bazel run``);
    the rule of ``vibe.train.runner.user_path``, here because algorithms sit below the runner."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def dataset_root(config: DataConfig) -> str:
    """The dataset folder, checked to be a LeRobot dataset; a one-line ``DatasetError`` otherwise."""
    if not config.dataset:
        raise DatasetError("DataConfig.dataset is empty; pass --data.dataset PATH (a folder from record_dataset)")
    return str(resolve_root(user_path(config.dataset)))


def dataset_env(config: DataConfig, default: str) -> str:
    """The env the dataset was recorded in (``meta/vibe.json``'s ``env``), else ``default`` (the config's)."""
    metadata = read_vibe_metadata(dataset_root(config)) or {}
    return str(metadata.get("env") or default)


def observation_key(space: spaces.Space) -> str:
    return IMAGE_KEY if len(space.shape) == 3 else STATE_KEY


def check_spaces(root: str, env: Env, env_params: Any, env_id: str, where: str) -> None:
    """Raises a one-line ``DatasetError`` naming ``root`` and the field when the dataset's observations or
    actions do not fit ``env`` (e.g. a Pendulum dataset for a CartPole preset)."""
    with open(os.path.join(root, "meta", "info.json")) as f:
        stored = json.load(f)["features"]
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    obs_key = observation_key(obs_space)
    hint = f"record the dataset in {env_id} or train the preset of its env ({where})"
    if obs_key not in stored:
        raise DatasetError(f"{root} has no feature {obs_key!r} ({env_id} observes {obs_space!r}); {hint}")
    if tuple(stored[obs_key]["shape"]) != tuple(obs_space.shape):
        raise DatasetError(
            f"{root}: feature {obs_key!r} has shape {tuple(stored[obs_key]['shape'])} but {env_id} observes "
            f"{obs_space!r}; {hint}"
        )
    if ACTION_KEY not in stored:
        raise DatasetError(f"{root} has no feature {ACTION_KEY!r}; it has {', '.join(stored)}")
    action = stored[ACTION_KEY]
    discrete = isinstance(action_space, spaces.Discrete)
    stored_discrete = np.issubdtype(np.dtype(action["dtype"]), np.integer)
    fits = stored_discrete == discrete and (
        tuple(action["shape"]) == (1,) if discrete else tuple(action["shape"]) == tuple(action_space.shape)
    )
    recorded = (read_vibe_metadata(root) or {}).get("action_space", {})
    if fits and discrete and recorded.get("n") not in (None, getattr(action_space, "n", None)):
        fits = False
    if not fits:
        raise DatasetError(
            f"{root}: feature {ACTION_KEY!r} is {action['dtype']} {tuple(action['shape'])}"
            f"{' of ' + str(recorded['n']) + ' actions' if recorded.get('n') else ''} but {env_id} acts in "
            f"{action_space!r}; {hint}"
        )


def load(
    config: DataConfig, env: Env, env_params: Any, *, env_id: str, owner: str, transitions: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, normalize.NormStats]]:
    """The dataset's arrays (see the module docstring) and NormStats of ``obs`` and ``action`` (per dimension
    of one step: the dataset's ``norm_stats.json`` when it has one, else computed over its frames)."""
    root = dataset_root(config)
    check_spaces(root, env, env_params, env_id, owner)
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    obs_key = observation_key(obs_space)
    keys = [obs_key, ACTION_KEY, "episode_index"] + ([REWARD_KEY, DONE_KEY] if transitions else [])
    reader = LeRobotReader(root, action_horizon=config.action_horizon, keys=keys)
    batch = reader.get_batch(np.arange(len(reader)))
    n, horizon = len(reader), config.action_horizon
    action_shape = () if isinstance(action_space, spaces.Discrete) else tuple(action_space.shape)
    obs = np.asarray(batch[obs_key]).reshape(n, *obs_space.shape)
    data = {
        "obs": obs.astype(np.uint8 if obs_key == IMAGE_KEY else np.float32),
        "action": np.asarray(batch[ACTION_KEY]).reshape(n, horizon, *action_shape),
        "action_is_pad": np.asarray(batch[f"{ACTION_KEY}_is_pad"], bool).reshape(n, horizon),
    }
    data["action"] = data["action"].astype(np.int32 if not action_shape else np.float32)
    if transitions:
        episode = np.asarray(batch["episode_index"])
        has_next = np.append(episode[1:] == episode[:-1], False)
        terminated = np.asarray(batch[DONE_KEY], bool).reshape(n)
        following = np.minimum(np.arange(n) + 1, n - 1)
        data["next_obs"] = np.where(has_next.reshape(n, *[1] * (obs.ndim - 1)), data["obs"][following], data["obs"])
        data["reward"] = np.asarray(batch[REWARD_KEY], np.float32).reshape(n)
        data["terminated"] = terminated
        data["rows"] = np.flatnonzero(has_next | terminated).astype(np.int32)
    return data, norm_stats(root, data)


def norm_stats(root: str, data: dict[str, np.ndarray]) -> dict[str, normalize.NormStats]:
    """``{"obs", "action"}`` NormStats: ``root/norm_stats.json``'s ``observation.state``/``action`` when the
    dataset has that file (``compute_norm_stats`` writes it), else computed over the loaded frames."""
    path = os.path.join(root, normalize.FILENAME)
    if os.path.exists(path):
        stored = normalize.load(root)
        if STATE_KEY in stored and ACTION_KEY in stored:
            return {"obs": stored[STATE_KEY], "action": stored[ACTION_KEY]}
    out = {}
    for name, values in (("obs", data["obs"]), ("action", data["action"][:, 0])):
        running = normalize.RunningStats()
        running.update(values.reshape(len(values), -1).astype(np.float64))
        out[name] = running.get()
    return out


@flax.struct.dataclass
class Normalizer:
    """Affine maps of observations and actions: ``(x - mean) / scale`` into the network, back out of it.

    Kept in ``params`` (never trained), so a checkpoint's ``params`` alone gives the policy its input and
    output transforms; identity (0, 1) when the run does not normalise.
    """

    obs_mean: at.Float[at.Array, "..."]
    obs_scale: at.Float[at.Array, "..."]
    action_mean: at.Float[at.Array, "..."]
    action_scale: at.Float[at.Array, "..."]

    @classmethod
    def make(
        cls, obs_shape: tuple[int, ...], action_shape: tuple[int, ...], stats: dict[str, normalize.NormStats] | None
    ) -> "Normalizer":
        """From NormStats (constant dimensions get scale 1, as ``transforms.Normalize``), or the identity."""

        def affine(name: str, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
            if stats is None or name not in stats:
                return jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32)
            mean, std = np.asarray(stats[name].mean), np.asarray(stats[name].std)
            scale = np.where(std > normalize.DEGENERATE_SCALE, std, 1.0)
            return jnp.asarray(mean.reshape(shape), jnp.float32), jnp.asarray(scale.reshape(shape), jnp.float32)

        obs_mean, obs_scale = affine("obs", obs_shape)
        action_mean, action_scale = affine("action", action_shape)
        return cls(obs_mean, obs_scale, action_mean, action_scale)

    def obs(self, obs: at.Array) -> at.Float[at.Array, "..."]:
        return (obs.astype(jnp.float32) - self.obs_mean) / self.obs_scale

    def action(self, action: at.Array) -> at.Float[at.Array, "..."]:
        return (action - self.action_mean) / self.action_scale

    def unaction(self, action: at.Array) -> at.Float[at.Array, "..."]:
        return action * self.action_scale + self.action_mean


@dataclasses.dataclass(frozen=True)
class OfflineAlgorithm:
    """Fields and behaviour the offline algorithms share. ``data`` is None in a record built for acting only
    (a policy from a checkpoint); training needs it. Subclasses add networks, ``init``, ``train_step``, ``act``."""

    name: ClassVar[str]
    config: Any
    env: Env  # the env the dataset was recorded in: greedy evaluation runs there
    env_params: Any
    data: dict[str, Any] | None  # host arrays (see the module docstring); traced arrays inside a chunk
    norm_stats: dict[str, normalize.NormStats] | None  # the dataset's, when --data.normalize

    @property
    def num_updates(self) -> int:
        return int(self.config.num_updates)

    @property
    def steps_per_update(self) -> int:
        return int(self.config.steps_per_update)

    def act(self, params: Any, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        raise NotImplementedError

    def policy_input(self, obs_stats: Any, obs: at.Array) -> at.Array:
        return obs  # normalisation lives in params (``Normalizer``), applied by ``act``

    def obs_stats(self, state: Any) -> Any:
        return None

    def roles(self, state: Any) -> Any:
        """Everything by the FSDP rule: an offline state has no env axis."""
        return jax.tree.map(lambda _: "fsdp", state)

    def evaluate(self, state: Any, key: at.Key, num_episodes: int) -> at.Float[at.Array, " e"]:
        def policy(obs: at.Array, key: at.Key) -> at.Array:
            return self.act(state.params, obs, key, greedy=True)

        return evaluation.evaluate(self.env, self.env_params, policy, key, num_episodes=num_episodes)

    def sample(self, key: at.Key) -> dict[str, at.Array]:
        """A batch of ``config.data.batch_size`` rows drawn uniformly with replacement (inside jit); only
        transition rows (``data["rows"]``) when the data has them."""
        if self.data is None:
            raise ValueError(f"{self.name} was built without a dataset (a policy record); it cannot train")
        data = dict(self.data)
        batch_size = self.config.data.batch_size
        rows = data.pop("rows", None)
        n = next(iter(data.values())).shape[0]
        if rows is None:
            indices = jax.random.randint(key, (batch_size,), 0, n)
        else:
            indices = jnp.asarray(rows)[jax.random.randint(key, (batch_size,), 0, rows.shape[0])]
        return {k: jnp.take(jnp.asarray(v), indices, axis=0) for k, v in data.items()}
