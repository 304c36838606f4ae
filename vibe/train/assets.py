"""What a checkpoint says about itself: the ``assets`` item, JSON, read by policies and by resume.

    {"algorithm": "dqn", "config": {...the TrainConfig...}, "env": "CartPole-v1", "env_params": {...},
     "observation_space": {"kind": "box", ...}, "action_space": {"kind": "discrete", "n": 2},
     "seeds": [0], "obs_stats": null | {"mean": [...], "var": [...], "count": ...}}

``config`` round-trips (``vibe.core.serialize.from_json`` gives an equal dataclass); the spaces are
data (``vibe.envs.spaces.space_to_json``); ``obs_stats`` holds the observation-normalisation
statistics of the saved state (with a leading seed axis under ``--num-seeds``), so a policy is
rebuilt from ``params`` and these assets without reading ``train_state``.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from vibe.algorithms.algorithm import Algorithm
from vibe.envs import spaces


def _plain(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)


def env_params_json(params: Any) -> Any:
    """An env's params as JSON data (a dataclass of scalars in gymnax), or None when they have no fields."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return {f.name: _plain(getattr(params, f.name)) for f in dataclasses.fields(params)}
    return None


def run_assets(algorithm: Algorithm, config: Mapping[str, Any], env_id: str, seeds: list[int]) -> dict[str, Any]:
    """The assets that stay the same for a whole run."""
    params = algorithm.env_params
    return {
        "algorithm": algorithm.name,
        "config": dict(config),
        "env": env_id,
        "env_params": env_params_json(params),
        "observation_space": spaces.space_to_json(algorithm.env.observation_space(params)),
        "action_space": spaces.space_to_json(algorithm.env.action_space(params)),
        "seeds": seeds,
    }


def obs_stats_json(algorithm: Algorithm, state: Any) -> Any:
    """The state's observation-normalisation statistics as JSON lists (None when the algorithm has none)."""
    stats = algorithm.obs_stats(state)
    if stats is None:
        return None
    return {f.name: _plain(jax.device_get(getattr(stats, f.name))) for f in dataclasses.fields(stats)}
