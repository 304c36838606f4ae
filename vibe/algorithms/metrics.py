"""``Metrics``: what one ``train_step`` reports, with its reduction over a chunk declared by field.

A chunk of K updates sums every leaf; ``summarize`` then turns the sums into a log row:
``per_update`` values become means over the K updates (losses, epsilon, alpha), ``episode_sums``
become means per completed episode (``episode/return_mean``, ``episode/length_mean``), and the
episode count stays a count (``episode/count``).
"""

from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from vibe.core import typing as at


@flax.struct.dataclass
class Metrics:
    """Float32 scalars of one update.

    Attributes:
        per_update: averaged over updates, logged under their own names (e.g. ``loss/total``).
        episode_sums: totals over the episodes completed in the update (``return``, ``length``),
            averaged per episode and logged as ``episode/<name>_mean``.
        episode_count: episodes completed in the update.
    """

    per_update: dict[str, at.Float[at.Array, ""]]
    episode_sums: dict[str, at.Float[at.Array, ""]]
    episode_count: at.Float[at.Array, ""]


def from_episodes(per_update: Mapping[str, at.Array], info: Mapping[str, at.Array]) -> Metrics:
    """``Metrics`` with the episode totals of ``EpisodeStats`` info arrays (any shape: ``[t, n]``, ``[n]``)."""
    return Metrics(
        per_update={name: jnp.asarray(value, jnp.float32) for name, value in per_update.items()},
        episode_sums={
            "return": info["episode_return"].sum().astype(jnp.float32),
            "length": info["episode_length"].sum().astype(jnp.float32),
        },
        episode_count=info["done"].sum().astype(jnp.float32),
    )


def without_episodes(per_update: Mapping[str, at.Array]) -> Metrics:
    """``Metrics`` of an update that steps no env (learning from a dataset)."""
    return Metrics({name: jnp.asarray(v, jnp.float32) for name, v in per_update.items()}, {}, jnp.zeros(()))


def summarize(totals: Metrics, num_updates: int) -> dict[str, float]:
    """A log row from the sums of ``num_updates`` updates' metrics (host values)."""
    row = {name: float(value) / num_updates for name, value in totals.per_update.items()}
    count = float(totals.episode_count)
    if totals.episode_sums:
        row["episode/count"] = count
    if count > 0:
        row.update({f"episode/{name}_mean": float(value) / count for name, value in totals.episode_sums.items()})
    return row


def summarize_seeds(totals: Metrics, num_updates: int) -> dict[str, Any]:
    """``summarize`` for sums with a leading seed axis: each metric's mean over the seeds that have it,
    plus ``<metric>/seeds`` with the per-seed values (None where a seed finished no episode)."""
    seeds = len(totals.episode_count)
    per_seed = [summarize(jax.tree.map(lambda x, i=i: x[i], totals), num_updates) for i in range(seeds)]
    row: dict[str, Any] = {}
    for key in dict.fromkeys(k for r in per_seed for k in r):
        values = [r.get(key) for r in per_seed]
        present = [v for v in values if v is not None]
        row[key] = sum(present) / len(present)
        row[f"{key}/seeds"] = values
    return row
