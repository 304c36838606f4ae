"""A numpy policy for tests and benchmarks, served through the real server code.

    python -m vibe.serving.fake_policy --obs state:4:float32,image:64x64x3:uint8 --action-shape 8x2 --delay-ms 5

``infer_batch`` sleeps ``delay_ms`` once per call (a stand-in for a device step,
so batching pays off as it would on an accelerator) and returns
``actions[b] = sum of every observation element of row b + arange(action size)``,
reshaped to ``action_shape``, in float32: tests can check each reply against
its own request. ``fail_value``: a row whose first observation's first element
equals it makes the policy raise (to test error isolation).
"""

import dataclasses
import logging
import time
from typing import Annotated, Any

import numpy as np
import tyro

from vibe.policies.policy import array_spec
from vibe.serving.server import PolicyServer, ServerConfig


def parse_obs_spec(text: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``"state:4:float32,image:64x64x3:uint8"`` → ``{"state": ((4,), float32), ...}`` (``scalar`` for shape ())."""
    spec = {}
    for item in text.split(","):
        try:
            key, shape, dtype = item.split(":")
            dims = () if shape in ("", "scalar") else tuple(int(d) for d in shape.split("x"))
            spec[key] = (dims, np.dtype(dtype))
        except (ValueError, TypeError) as e:
            raise ValueError(f"--obs item {item!r}: expected key:AxBxC:dtype ({e})") from None
    return spec


def expected_actions(obs: dict[str, np.ndarray], action_shape: tuple[int, ...]) -> np.ndarray:
    """What ``FakePolicy.infer`` returns for one observation (for tests)."""
    total = sum(float(np.sum(obs[k], dtype=np.float64)) for k in sorted(obs))
    return (total + np.arange(int(np.prod(action_shape)), dtype=np.float64)).reshape(action_shape).astype(np.float32)


class FakePolicy:
    def __init__(
        self,
        observation: dict[str, tuple[tuple[int, ...], np.dtype]],
        action_shape: tuple[int, ...],
        delay_ms: float = 0.0,
        fail_value: float | None = None,
    ) -> None:
        self._observation = observation
        self._action_shape = action_shape
        self._delay_s = delay_ms / 1e3
        self._fail_value = fail_value
        self.batch_sizes: list[int] = []  # every infer_batch call's size, for in-process tests

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "observation": {k: array_spec(shape, dtype) for k, (shape, dtype) in self._observation.items()},
            "action": array_spec(self._action_shape, np.float32),
        }

    def infer_batch(self, obs: dict[str, Any]) -> dict[str, Any]:
        start = time.monotonic()
        keys = sorted(self._observation)
        batch = len(obs[keys[0]])
        self.batch_sizes.append(batch)
        if self._fail_value is not None:
            first = np.asarray(obs[next(iter(self._observation))]).reshape(batch, -1)
            if first.shape[1] and np.any(first[:, 0] == self._fail_value):
                raise RuntimeError(f"fake policy: an observation starts with fail_value {self._fail_value}")
        if self._delay_s:
            time.sleep(self._delay_s)
        total = sum(np.asarray(obs[k]).reshape(batch, -1).sum(axis=1, dtype=np.float64) for k in keys)
        size = int(np.prod(self._action_shape))
        actions = (np.asarray(total)[:, None] + np.arange(size, dtype=np.float64)).reshape(batch, *self._action_shape)
        infer_ms = (time.monotonic() - start) * 1e3
        return {"actions": actions.astype(np.float32), "policy_timing": {"infer_ms": infer_ms}}

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        out = self.infer_batch({k: np.asarray(v)[None] for k, v in obs.items()})
        return {"actions": out["actions"][0], "policy_timing": out["policy_timing"]}

    def reset(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Args:
    server: Annotated[ServerConfig, tyro.conf.OmitArgPrefixes]
    obs: str = "state:4:float32"  # observation spec: comma-separated key:AxBxC:dtype
    action_shape: str = "8x2"  # shape of one action chunk, AxB
    delay_ms: float = 0.0  # sleep per infer_batch call
    fail_value: float | None = None  # a row whose first element equals this makes the policy raise


def main(args: Args) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(asctime)s %(name)s] %(message)s")
    action_shape = tuple(int(d) for d in args.action_shape.split("x"))
    policy = FakePolicy(parse_obs_spec(args.obs), action_shape, args.delay_ms, args.fail_value)
    PolicyServer(policy, args.server).serve_forever()


if __name__ == "__main__":
    main(tyro.cli(Args))
