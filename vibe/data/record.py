"""Record rollouts of any JAX policy in a vibe ``Env`` into a LeRobot dataset.

    env, params = gymnax_env.make("CartPole-v1")
    record_episodes(env, params, policy_fn, episodes=20, out="data/cartpole", fps=50, key=jax.random.key(0))

Episodes are rolled out in parallel inside one jit (``vmap`` over episodes,
``scan`` over ``max_steps`` steps of the plain env, no auto-reset); an
episode's steps after it ended are masked off. The host then writes each
episode through ``LeRobotWriter``. 1-D observations become
``observation.state``; ``(H, W, C)`` images become ``observation.image``
(uint8; bool images become 0/255 and vibe's float images in [-1, 1] map to [0, 255]). An episode
still running after ``max_steps`` is marked truncated at its last step.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.data.lerobot_writer import DatasetSpec, LeRobotWriter
from vibe.envs import spaces
from vibe.envs.env import Env

PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]  # (one observation, key) -> one action


def space_to_json(space: spaces.Discrete | spaces.Box) -> dict[str, Any]:
    """A JSON-able description of a space (unbounded Box bounds become None)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "n": space.n}

    def bound(x: np.ndarray) -> list[Any]:
        return [float(v) if np.isfinite(v) else None for v in np.asarray(x, np.float64).ravel()]

    return {
        "type": "box",
        "shape": list(space.shape),
        "dtype": np.dtype(space.dtype).name,
        "low": bound(space.low),
        "high": bound(space.high),
    }


def rollout(env: Env, env_params: Any, policy_fn: PolicyFn, keys: jax.Array, max_steps: int) -> dict[str, jax.Array]:
    """Rolls out one episode per key (vmapped; jit it). Every field is ``[b, max_steps, ...]``.

    ``obs`` is the observation each action was taken in; ``alive`` marks the
    steps that belong to the episode (false after it terminated or truncated).
    """

    def episode(key: jax.Array) -> dict[str, jax.Array]:
        reset_key, key = jax.random.split(key)
        state, first = env.reset(reset_key, env_params)

        def step(carry: tuple[Any, jax.Array, jax.Array, jax.Array], _: None) -> tuple[Any, dict[str, jax.Array]]:
            state, obs, done, key = carry
            key, action_key, step_key = jax.random.split(key, 3)
            action = policy_fn(obs, action_key)
            next_state, ts = env.step(step_key, state, action, env_params)
            record = {
                "obs": obs,
                "action": action,
                "reward": ts.reward,
                "terminated": ts.terminated,
                "truncated": ts.truncated,
                "alive": ~done,
            }
            # Once done, stay frozen: later steps are masked off by `alive`.
            state = jax.tree.map(lambda new, old: jnp.where(done, old, new), next_state, state)
            obs = jnp.where(done, obs, ts.obs)
            return (state, obs, done | ts.terminated | ts.truncated, key), record

        carry = (state, first.obs, jnp.zeros((), bool), key)
        _, records = jax.lax.scan(step, carry, None, length=max_steps)
        return records

    return jax.vmap(episode)(keys)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 as is; bool (MinAtar's channels) as 0/255; floats from vibe's [-1, 1] to [0, 255]."""
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_:
        return images.astype(np.uint8) * 255
    if np.issubdtype(images.dtype, np.integer):
        return np.clip(images, 0, 255).astype(np.uint8)
    return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def record_episodes(
    env: Env,
    env_params: Any,
    policy_fn: PolicyFn,
    *,
    episodes: int,
    out: str | os.PathLike,
    fps: int,
    key: jax.Array,
    overwrite: bool = False,
    video: bool = False,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    batch: int = 16,
    task: str = "rollout",
) -> Path:
    """Records ``episodes`` episodes of ``policy_fn`` in ``env`` to a LeRobot dataset at ``out``.

    Args:
        policy_fn: jittable ``(obs, key) -> action`` for one observation.
        max_steps: steps per episode at most; default the env's ``params.max_steps_in_episode``.
        batch: episodes rolled out together in one jitted call.
        metadata: extra JSON-able fields for ``meta/vibe.json``; vibe adds ``observation_space``,
            ``action_space``, ``env`` (when the env has a ``name``), ``max_steps`` and ``fps``.
        Others: as ``LeRobotWriter`` / ``DatasetSpec``.

    Returns:
        The dataset folder.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: record at least one episode")
    if max_steps is None:
        max_steps = getattr(env_params, "max_steps_in_episode", None)
        if max_steps is None:
            raise ValueError("the env params have no max_steps_in_episode; pass max_steps= (steps per episode at most)")
    max_steps = int(max_steps)
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    if len(obs_space.shape) not in (1, 3):
        raise ValueError(
            f"observation shape {obs_space.shape}: LeRobot stores flat (d,) states or (H, W, C) images; "
            "flatten or render the observation first"
        )
    is_image = len(obs_space.shape) == 3
    discrete = isinstance(action_space, spaces.Discrete)
    spec = DatasetSpec(
        fps=fps,
        action_shape=() if discrete else tuple(action_space.shape),
        action_dtype="int64" if discrete else "float32",
        state_shape=None if is_image else tuple(obs_space.shape),
        image_shape=tuple(obs_space.shape) if is_image else None,  # type: ignore[arg-type]
        video=video,
        robot_type=getattr(env, "name", None),
    )
    info: dict[str, Any] = {
        "observation_space": space_to_json(obs_space),
        "action_space": space_to_json(action_space),
        "max_steps": max_steps,
        "fps": fps,
    }
    if getattr(env, "name", None):
        info["env"] = env.name  # type: ignore[attr-defined]
    run = jax.jit(lambda keys: rollout(env, env_params, policy_fn, keys, max_steps))

    from tqdm import tqdm

    keys = jax.random.split(key, episodes)
    with (
        LeRobotWriter(out, spec, metadata={**info, **(metadata or {})}, overwrite=overwrite, task=task) as writer,
        tqdm(total=episodes, desc=f"recording {Path(out).name}", unit="ep", disable=not progress) as bar,
    ):
        for start in range(0, episodes, batch):
            chunk = keys[start : start + batch]
            if len(chunk) < batch:  # keep one compiled shape: pad the last chunk, drop the extras
                chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            records = jax.device_get(run(chunk))
            for i in range(min(batch, episodes - start)):
                length = int(records["alive"][i].sum())
                obs = records["obs"][i, :length]
                truncated = np.asarray(records["truncated"][i, :length], bool).copy()
                terminated = np.asarray(records["terminated"][i, :length], bool)
                if not (terminated[-1] or truncated[-1]):
                    truncated[-1] = True  # still running at max_steps: a time-limit cut
                writer.add_episode(
                    actions=records["action"][i, :length],
                    rewards=records["reward"][i, :length],
                    terminated=terminated,
                    truncated=truncated,
                    states=None if is_image else obs,
                    images=_to_uint8(obs) if is_image else None,
                )
                bar.update(1)
    return Path(out).absolute()
