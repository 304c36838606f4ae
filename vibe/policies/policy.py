"""The ``Policy`` protocol: what serving, evaluation and robot code call.

A policy maps an observation dict to an action dict. ``infer`` takes one
observation; ``infer_batch`` takes the same dict with a leading batch axis on
every array and returns actions with that leading axis. Both report how long
inference took in ``policy_timing.infer_ms`` (milliseconds, host wall clock,
measured after the result is on the host).

``metadata`` describes the arrays (plain ints, lists and strings, so it goes
through JSON and msgpack unchanged)::

    {
        "observation": {"state": {"shape": [4], "dtype": "float32"},
                        "image": {"shape": [64, 64, 3], "dtype": "uint8"}},
        "action": {"shape": [8, 2], "dtype": "float32"},
        ...  # anything else a policy wants its clients to know (e.g. "reset_pose")
    }

Shapes are per example (no batch axis). An observation spec may carry
``"allow_nonfinite": True`` when the policy copes with NaN/inf in that key;
otherwise float inputs must be finite. ``array_spec`` builds an entry.
"""

from typing import Any, Protocol

import numpy as np


def array_spec(shape: tuple[int, ...], dtype: Any, *, allow_nonfinite: bool = False) -> dict[str, Any]:
    """One metadata entry: ``{"shape": [..], "dtype": "float32"}`` (``allow_nonfinite`` only when true)."""
    spec: dict[str, Any] = {"shape": [int(d) for d in shape], "dtype": np.dtype(dtype).name}
    if allow_nonfinite:
        spec["allow_nonfinite"] = True
    return spec


class Policy(Protocol):
    """An observation → action map with a description of both."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """One observation → ``{"actions": array shaped as metadata["action"], "policy_timing": {"infer_ms": ms}}``."""
        ...

    def infer_batch(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Observations stacked on a leading axis ``b`` → the same dict with actions of shape ``(b, *action_shape)``.

        Row ``i`` of the result depends only on row ``i`` of the input (a server pads
        batches with copies of a row and drops the extra rows of the result).
        ``policy_timing`` holds one ``infer_ms`` for the whole batch.
        """
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """Observation keys with shapes and dtypes, and the action's (module docstring)."""
        ...

    def reset(self) -> None:
        """Forgets per-episode state (a no-op for stateless policies)."""
        ...
