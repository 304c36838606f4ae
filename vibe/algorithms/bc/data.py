"""What the offline algorithms (BC, IQL) share: the dataset (in memory or streamed), its env, norm stats, the
base record.

    env_id = dataset_env(config.data, "CartPole-v1")        # the env its vibe metadata names (evaluation)
    frames, stats = open_frames(config.data, env, env_params, env_id=env_id, owner="BC")   # checked
    bc = BC.make(config, env, env_params, env_id=env_id, data=frames.arrays(), norm_stats=stats)  # in memory
    bc = BC.make(config, env, env_params, env_id=env_id, data=frames, norm_stats=stats)           # streaming

In memory, ``data`` is a dict of numpy arrays, one row per frame: ``obs [n, *obs]``, ``action [n, H, *act]``,
``action_is_pad [n, H]`` and, with ``transitions=True``, ``reward [n]``, ``terminated [n]`` (``next.done``:
a terminal state, no bootstrap), ``next_obs [n, *obs]`` (the next frame of the same episode; the frame
itself where there is none) and ``rows [m]`` int32: the frames that are transitions, i.e. all but the last
frame of an episode cut by a time limit (no s' was recorded after it). The runner puts ``data`` on the
devices once and passes it to every chunk as an argument (vibe/train/loop.py says why); ``train_step``
samples inside jit. Streaming (``--data.loader stream``), ``data`` is the ``OfflineFrames`` dataset of the
same rows (transition rows only, with transitions), and the runner feeds ``update`` batches from
``stream()``, a ``StreamingLoader`` whose position each checkpoint records.
"""

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms.bc.config import DataConfig
from vibe.core import typing as at
from vibe.data import normalize
from vibe.data.dataset import Feature
from vibe.data.lerobot_reader import DatasetError, LeRobotReader, resolve_root
from vibe.data.lerobot_writer import read_vibe_metadata
from vibe.data.loader import LoaderConfig, StreamingLoader
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


class OfflineFrames:
    """The dataset as the offline algorithms' rows, a ``Dataset`` the streaming loader reads in batches.

    Fields per sample: see the module docstring (``rows`` aside). Sample ``i`` is frame ``i`` or, with
    ``transitions``, transition frame ``rows[i]``, so an epoch of the streaming loader visits each
    transition once. ``arrays()`` is the in-memory path's whole dataset: the same values, read at once.
    Non-visual columns (states, actions, rewards) are in memory from the open; images are read per batch.
    """

    def __init__(
        self, root: str, config: DataConfig, obs_space: spaces.Space, action_space: spaces.Space, *, transitions: bool
    ):
        self.obs_key = observation_key(obs_space)
        self.obs_shape = tuple(obs_space.shape)
        self.action_shape = () if isinstance(action_space, spaces.Discrete) else tuple(action_space.shape)
        self.horizon, self.transitions = config.action_horizon, transitions
        keys = [self.obs_key, ACTION_KEY, "episode_index"] + ([REWARD_KEY, DONE_KEY] if transitions else [])
        self.reader = LeRobotReader(root, action_horizon=config.action_horizon, keys=keys)
        self.num_frames = n = len(self.reader)
        episode = self.reader.column("episode_index")
        self.has_next = np.append(episode[1:] == episode[:-1], False)
        self.rows: np.ndarray | None = None
        if transitions:
            terminated = np.asarray(self.reader.column(DONE_KEY), bool).reshape(n)
            self.rows = np.flatnonzero(self.has_next | terminated).astype(np.int32)

    def __len__(self) -> int:
        return self.num_frames if self.rows is None else len(self.rows)

    @property
    def features(self) -> dict[str, Feature]:
        sample = self[0]
        return {k: Feature(v.shape, v.dtype) for k, v in sample.items()}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        frames = np.asarray(indices, np.int64)
        if self.rows is not None:
            frames = self.rows[frames].astype(np.int64)
        batch = self._frames(frames)
        if self.transitions:
            following = np.minimum(frames + 1, self.num_frames - 1)
            batch["next_obs"] = self._next_obs(frames, batch["obs"], self._frames(following, obs_only=True)["obs"])
        return [{k: v[i] for k, v in batch.items()} for i in range(len(frames))]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every frame at once (plus ``rows`` with transitions): the in-memory path's data."""
        frames = np.arange(self.num_frames)
        data = self._frames(frames)
        if self.transitions:
            assert self.rows is not None
            following = np.minimum(frames + 1, self.num_frames - 1)
            data["next_obs"] = self._next_obs(frames, data["obs"], data["obs"][following])
            data["rows"] = self.rows
        return data

    def _next_obs(self, frames: np.ndarray, obs: np.ndarray, following: np.ndarray) -> np.ndarray:
        has_next = self.has_next[frames].reshape(len(frames), *[1] * len(self.obs_shape))
        return np.where(has_next, following, obs)

    def _frames(self, frames: np.ndarray, obs_only: bool = False) -> dict[str, np.ndarray]:
        batch = self.reader.get_batch(frames)
        m = len(frames)
        obs = np.asarray(batch[self.obs_key]).reshape(m, *self.obs_shape)
        out = {"obs": obs.astype(np.uint8 if self.obs_key == IMAGE_KEY else np.float32)}
        if obs_only:
            return out
        action = np.asarray(batch[ACTION_KEY]).reshape(m, self.horizon, *self.action_shape)
        out["action"] = action.astype(np.int32 if not self.action_shape else np.float32)
        out["action_is_pad"] = np.asarray(batch[f"{ACTION_KEY}_is_pad"], bool).reshape(m, self.horizon)
        if self.transitions:
            out["reward"] = np.asarray(batch[REWARD_KEY], np.float32).reshape(m)
            out["terminated"] = np.asarray(batch[DONE_KEY], bool).reshape(m)
        return out

    def norm_stats(self) -> dict[str, normalize.NormStats]:
        """NormStats of ``obs`` (state observations only: images are scaled by the encoder) and ``action``
        (per dimension of one step), over every frame, from the in-memory columns."""
        out = {}
        columns = {"action": self.reader.column(ACTION_KEY)}
        if self.obs_key == STATE_KEY:
            columns["obs"] = np.asarray(self.reader.column(STATE_KEY), np.float32)
        for name, values in sorted(columns.items(), key=lambda kv: kv[0] != "obs"):
            running = normalize.RunningStats()
            running.update(np.asarray(values).reshape(self.num_frames, -1).astype(np.float64))
            out[name] = running.get()
        return out


def open_frames(
    config: DataConfig, env: Env, env_params: Any, *, env_id: str, owner: str, transitions: bool = False
) -> tuple[OfflineFrames, dict[str, normalize.NormStats]]:
    """The dataset checked against ``env`` as ``OfflineFrames`` (for the streaming loader), and its NormStats:
    the dataset's ``norm_stats.json`` (``compute_norm_stats`` writes it) when it has ``observation.state``
    and ``action``, else computed over its frames."""
    root = dataset_root(config)
    check_spaces(root, env, env_params, env_id, owner)
    frames = OfflineFrames(
        root, config, env.observation_space(env_params), env.action_space(env_params), transitions=transitions
    )
    path = os.path.join(root, normalize.FILENAME)
    if os.path.exists(path):
        stored = normalize.load(root)
        if STATE_KEY in stored and ACTION_KEY in stored:
            return frames, {"obs": stored[STATE_KEY], "action": stored[ACTION_KEY]}
    return frames, frames.norm_stats()


def load(
    config: DataConfig, env: Env, env_params: Any, *, env_id: str, owner: str, transitions: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, normalize.NormStats]]:
    """The dataset's arrays (see the module docstring), all frames at once, and its NormStats
    (``open_frames``)."""
    frames, stats = open_frames(config, env, env_params, env_id=env_id, owner=owner, transitions=transitions)
    return frames.arrays(), stats


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
    """Fields and behaviour the offline algorithms share. Subclasses add networks, ``init``, ``update``, ``act``.

    ``data`` is the dataset: host arrays (``load``; the in-memory path: the runner puts them on the devices
    once and ``train_step`` samples inside jit), ``OfflineFrames`` (``open_frames``; the streaming path: the
    runner feeds ``update`` batches from ``stream``), or None in a record built for acting only (a policy
    from a checkpoint).
    """

    name: ClassVar[str]
    config: Any
    env: Env  # the env the dataset was recorded in: greedy evaluation runs there
    env_params: Any
    data: "dict[str, Any] | OfflineFrames | None"  # traced arrays inside a chunk on the in-memory path
    norm_stats: dict[str, normalize.NormStats] | None  # the dataset's, when --data.normalize

    @property
    def num_updates(self) -> int:
        return int(self.config.num_updates)

    @property
    def steps_per_update(self) -> int:
        return int(self.config.steps_per_update)

    def update(self, state: Any, batch: dict[str, at.Array]) -> tuple[Any, Any]:
        """One gradient step on ``batch`` (the fields of the module docstring, ``[batch_size, ...]``)."""
        raise NotImplementedError

    def train_step(self, state: Any) -> tuple[Any, Any]:
        """The in-memory path's step: a batch drawn inside jit with the state's key, then ``update``."""
        key, sample_key = jax.random.split(state.key)
        return self.update(dataclasses.replace(state, key=key), self.sample(sample_key))

    def stream(self, mesh: Any, seed: int, position: Any = None) -> StreamingLoader | None:
        """The streaming path's loader of ``config.data.batch_size`` batches on ``mesh`` from ``position`` (a
        checkpoint's ``get_state()``; the start by default); None on the in-memory path."""
        if not isinstance(self.data, OfflineFrames):
            return None
        config = LoaderConfig(self.config.data.batch_size, num_workers=self.config.data.num_workers, seed=seed)
        return StreamingLoader(self.data, mesh, config, state=position)

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
        if not isinstance(self.data, dict):
            what = "a policy record" if self.data is None else "the streaming path (batches come from stream())"
            raise ValueError(f"{self.name} was built without in-memory data ({what}); it cannot sample")
        data = dict(self.data)
        batch_size = self.config.data.batch_size
        rows = data.pop("rows", None)
        n = next(iter(data.values())).shape[0]
        if rows is None:
            indices = jax.random.randint(key, (batch_size,), 0, n)
        else:
            indices = jnp.asarray(rows)[jax.random.randint(key, (batch_size,), 0, rows.shape[0])]
        return {k: jnp.take(jnp.asarray(v), indices, axis=0) for k, v in data.items()}
