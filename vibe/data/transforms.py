"""Sample transforms: functions from one sample dict to another (openpi's semantics).

A transform maps an *unbatched* sample (nested dicts of numpy arrays) to a new
one. Unlike openpi's, vibe's transforms never modify their input in place: a
sample may be a view into a dataset's cached columns.

    train = Group(inputs=[Repack({"state": "observation.state", "actions": "action"})])
    train = train.push(inputs=[Normalize(stats)], outputs=[Unnormalize(stats)])
    sample = compose(train.inputs)(reader[0])

Nested keys are addressed by '/'-joined paths ("image/base"), as in openpi.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from vibe.data.normalize import DEGENERATE_SCALE, NormStats

Data = dict[str, Any]
# openpi's epsilon in every normalization denominator; kept so stats files mean the same in both.
EPS = 1e-6


class Transform(Protocol):
    def __call__(self, data: Data) -> Data:
        """A new sample computed from ``data`` (which is left unchanged)."""
        ...


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": x}}`` → ``{"a/b": x}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, path + "/")
        else:
            out[path] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> Data:
    """``{"a/b": x}`` → ``{"a": {"b": x}}``."""
    out: Data = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


@dataclasses.dataclass(frozen=True)
class Compose:
    """Applies ``transforms`` in order."""

    transforms: Sequence[Transform]

    def __call__(self, data: Data) -> Data:
        for transform in self.transforms:
            data = transform(data)
        return data


def compose(transforms: Sequence[Transform]) -> Compose:
    return Compose(tuple(transforms))


@dataclasses.dataclass(frozen=True)
class Group:
    """Input transforms (sample → model) and output transforms (model → user).

    ``push`` appends inputs (they run after the existing ones) and prepends
    outputs (they run before the existing ones), so a pushed pair nests inside
    the earlier ones: in = [repack, normalize], out = [unnormalize, unrepack].
    """

    inputs: Sequence[Transform] = ()
    outputs: Sequence[Transform] = ()

    def push(self, *, inputs: Sequence[Transform] = (), outputs: Sequence[Transform] = ()) -> "Group":
        return Group(inputs=(*self.inputs, *inputs), outputs=(*outputs, *self.outputs))


@dataclasses.dataclass(frozen=True)
class Repack:
    """Builds a new sample whose leaves are source keys: ``{"state": "observation.state"}``.

    Source keys are '/'-paths into the input. Keys not named (LeRobot's
    ``*_is_pad`` included) are dropped; a missing key raises KeyError.
    """

    structure: Mapping[str, Any]

    def __call__(self, data: Data) -> Data:
        source = flatten(data)
        out = {}
        for target, key in flatten(self.structure).items():
            if key not in source:
                raise KeyError(
                    f"Repack: source key {key!r} (for {target!r}) not in the sample; it has {sorted(source)}"
                )
            out[target] = source[key]
        return unflatten(out)


def _select(stats: Mapping[str, NormStats], data: Data, strict: bool, name: str) -> dict[str, Any]:
    flat = flatten(data)
    if strict:
        missing = [key for key in stats if key not in flat]
        if missing:
            raise KeyError(
                f"{name}: stats key {missing[0]!r} not in the sample (has {sorted(flat)}); fix the stats keys"
            )
    return flat


def _scale(spread: np.ndarray) -> np.ndarray:
    """openpi's denominator ``spread + 1e-6``, but 1 on constant dimensions (no blow-up to 1e6·x)."""
    return np.where(spread <= DEGENERATE_SCALE, 1.0, spread + EPS)


def _check_quantiles(key: str, stats: NormStats) -> tuple[np.ndarray, np.ndarray]:
    if stats.q01 is None or stats.q99 is None:
        raise ValueError(
            f"quantile stats must be provided if use_quantiles is True. Key {key} is missing q01 or q99; "
            "recompute them with compute_norm_stats or pass use_quantiles=False"
        )
    return stats.q01, stats.q99


@dataclasses.dataclass(frozen=True)
class Normalize:
    """Z-score ``(x − mean) / (std + 1e-6)`` or quantile ``(x − q01) / (q99 − q01 + 1e-6)·2 − 1`` (unclipped).

    Stats are matched by flattened key and applied to the first ``d`` entries
    of the last axis (``d`` = the stats' length); any entries past ``d`` (e.g.
    zero padding) pass through. A constant dimension (std or q99 − q01 at most
    ``DEGENERATE_SCALE``) is divided by 1, and in quantile mode centred on
    (q01 + q99) / 2, so it maps to 0. ``strict`` makes a stats key absent from
    the sample an error; otherwise it is skipped.
    """

    norm_stats: Mapping[str, NormStats]
    use_quantiles: bool = False
    strict: bool = False

    def __call__(self, data: Data) -> Data:
        flat = dict(_select(self.norm_stats, data, self.strict, "Normalize"))
        for key, stats in self.norm_stats.items():
            if key not in flat:
                continue
            x = np.asarray(flat[key])
            d = min(x.shape[-1], len(stats.mean))
            head = x[..., :d].astype(np.result_type(x.dtype, np.float32))
            if self.use_quantiles:
                q01, q99 = (q[:d] for q in _check_quantiles(key, stats))
                spread = q99 - q01
                normalized = np.where(
                    spread <= DEGENERATE_SCALE, head - (q01 + q99) / 2, (head - q01) / _scale(spread) * 2 - 1
                )
            else:
                normalized = (head - stats.mean[:d]) / _scale(stats.std[:d])
            flat[key] = np.concatenate([normalized.astype(head.dtype), x[..., d:].astype(head.dtype)], axis=-1)
        return unflatten(flat)


@dataclasses.dataclass(frozen=True)
class Unnormalize:
    """The inverse of ``Normalize`` with the same stats; every stats key must be in the sample."""

    norm_stats: Mapping[str, NormStats]
    use_quantiles: bool = False

    def __call__(self, data: Data) -> Data:
        flat = dict(_select(self.norm_stats, data, True, "Unnormalize"))
        for key, stats in self.norm_stats.items():
            x = np.asarray(flat[key])
            d = min(x.shape[-1], len(stats.mean))
            head = x[..., :d].astype(np.result_type(x.dtype, np.float32))
            if self.use_quantiles:
                q01, q99 = (q[:d] for q in _check_quantiles(key, stats))
                spread = q99 - q01
                value = np.where(
                    spread <= DEGENERATE_SCALE, head + (q01 + q99) / 2, (head + 1) / 2 * _scale(spread) + q01
                )
            else:
                value = head * _scale(stats.std[:d]) + stats.mean[:d]
            flat[key] = np.concatenate([value.astype(head.dtype), x[..., d:].astype(head.dtype)], axis=-1)
        return unflatten(flat)


@dataclasses.dataclass(frozen=True)
class ResizeImages:
    """Resizes ``keys`` (``[..., H, W, C]`` images) to ``height × width`` keeping aspect, padding the rest.

    Uses ``vibe.envs.image.resize_with_pad`` (JAX); the result is numpy again. In DataLoader workers
    this needs ``LoaderConfig(mp_context="spawn")`` (the default): JAX in a forked worker deadlocks.
    """

    height: int
    width: int
    keys: Sequence[str] = ("observation.image",)

    def __call__(self, data: Data) -> Data:
        from vibe.envs.image import resize_with_pad

        flat = flatten(data)
        for key in self.keys:
            if key not in flat:
                raise KeyError(f"ResizeImages: image key {key!r} not in the sample (has {sorted(flat)}); fix keys=")
            flat[key] = np.asarray(resize_with_pad(flat[key], self.height, self.width))
        return unflatten(flat)


def _pad(x: np.ndarray, dim: int) -> np.ndarray:
    if x.shape[-1] >= dim:
        return x
    return np.concatenate([x, np.zeros((*x.shape[:-1], dim - x.shape[-1]), x.dtype)], axis=-1)


@dataclasses.dataclass(frozen=True)
class PadStatesAndActions:
    """Zero-pads the last axis of state and actions to ``dim`` (longer ones are left as they are)."""

    dim: int
    state_key: str = "observation.state"
    action_key: str = "action"

    def __call__(self, data: Data) -> Data:
        flat = flatten(data)
        for key in (self.state_key, self.action_key):
            if key in flat:
                flat[key] = _pad(np.asarray(flat[key]), self.dim)
        return unflatten(flat)


def make_bool_mask(*dims: int) -> tuple[bool, ...]:
    """``make_bool_mask(6, -1, 6, -1)``: n > 0 gives n Trues, n < 0 gives |n| Falses."""
    return tuple(flag for n in dims for flag in [n > 0] * abs(n))


def _shift(data: Data, mask: Sequence[bool] | None, state_key: str, action_key: str, sign: float) -> Data:
    flat = flatten(data)
    if mask is None or action_key not in flat:
        return data
    if state_key not in flat:
        raise KeyError(f"delta/absolute actions need the state {state_key!r}; the sample has {sorted(flat)}")
    m = np.asarray(mask, bool)
    d = len(m)
    actions = np.array(flat[action_key], copy=True)  # [..., a]; state [s] broadcasts over the horizon
    state = np.asarray(flat[state_key])[..., :d]
    actions[..., :d] += sign * np.where(m, state, 0).astype(actions.dtype)
    flat[action_key] = actions
    return unflatten(flat)


@dataclasses.dataclass(frozen=True)
class DeltaActions:
    """Actions relative to the current state where ``mask`` is true: ``a[..., i] -= state[i]``."""

    mask: Sequence[bool] | None
    state_key: str = "observation.state"
    action_key: str = "action"

    def __call__(self, data: Data) -> Data:
        return _shift(data, self.mask, self.state_key, self.action_key, -1.0)


@dataclasses.dataclass(frozen=True)
class AbsoluteActions:
    """The inverse of ``DeltaActions``: ``a[..., i] += state[i]`` where ``mask`` is true."""

    mask: Sequence[bool] | None
    state_key: str = "observation.state"
    action_key: str = "action"

    def __call__(self, data: Data) -> Data:
        return _shift(data, self.mask, self.state_key, self.action_key, 1.0)
