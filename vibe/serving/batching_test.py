"""The batcher in-process: padding to fixed sizes, per-row results, failure isolation, a bounded queue."""

import asyncio

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.policies.policy import array_spec
from vibe.serving.batching import Batcher, Busy, PolicyError, batch_sizes
from vibe.serving.fake_policy import FakePolicy, expected_actions
from vibe.serving.server import PolicyServer, ServerConfig

SPEC = {"state": ((3,), np.dtype(np.float32))}


def test_batch_sizes():
    assert batch_sizes(1) == (1,)
    assert batch_sizes(8) == (1, 2, 4, 8)
    assert batch_sizes(6) == (1, 2, 4, 6)
    assert batch_sizes(16) == (1, 2, 4, 8, 16)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        batch_sizes(0)


def run_concurrently(batcher: Batcher, observations: list[dict]) -> list:
    async def main():
        futures = [batcher.submit(obs) for obs in observations]  # all queued before the worker looks
        return await asyncio.gather(*futures, return_exceptions=True)

    batcher.start()
    try:
        return asyncio.run(main())
    finally:
        batcher.stop()


def test_concurrent_requests_share_one_padded_call():
    policy = FakePolicy(SPEC, (2, 2))
    batcher = Batcher(policy, ["state"], max_batch=8, max_wait_s=0.5, max_queue=16, active_clients=lambda: 5)
    observations = [{"state": np.full(3, i, np.float32)} for i in range(5)]
    results = run_concurrently(batcher, observations)
    assert policy.batch_sizes == [8]  # 5 requests, padded to the next compiled size
    for obs, result in zip(observations, results, strict=True):
        np.testing.assert_allclose(result.output["actions"], expected_actions(obs, (2, 2)))
        assert result.batch_size == 5 and result.infer_ms >= 0
        assert result.output["policy_timing"]["infer_ms"] >= 0


def test_only_compiled_sizes_reach_the_policy():
    policy = FakePolicy(SPEC, (2,))
    batcher = Batcher(policy, ["state"], max_batch=6, max_wait_s=0.0, max_queue=64)
    results = run_concurrently(batcher, [{"state": np.zeros(3, np.float32)} for _ in range(23)])
    assert len(results) == 23
    assert set(policy.batch_sizes) <= set(batch_sizes(6)), policy.batch_sizes


def test_a_failing_observation_fails_only_its_request():
    policy = FakePolicy(SPEC, (2,), fail_value=-1.0)
    batcher = Batcher(policy, ["state"], max_batch=4, max_wait_s=0.5, max_queue=8, active_clients=lambda: 3)
    observations = [{"state": np.array([v, 0, 0], np.float32)} for v in (1.0, -1.0, 2.0)]
    good, bad, other = run_concurrently(batcher, observations)
    assert isinstance(bad, PolicyError) and "fail_value" in str(bad)
    np.testing.assert_allclose(good.output["actions"], expected_actions(observations[0], (2,)))
    np.testing.assert_allclose(other.output["actions"], expected_actions(observations[2], (2,)))


def test_full_queue_raises_busy():
    batcher = Batcher(FakePolicy(SPEC, (2,)), ["state"], max_batch=1, max_wait_s=0.0, max_queue=2)

    async def main():
        batcher.submit({"state": np.zeros(3, np.float32)})
        batcher.submit({"state": np.zeros(3, np.float32)})
        with pytest.raises(Busy, match="max_queue 2"):
            batcher.submit({"state": np.zeros(3, np.float32)})

    asyncio.run(main())  # the worker never started: nothing leaves the queue


class JitPolicy:
    """actions = 2 * state through jax.jit, counting traces (one per new batch size)."""

    def __init__(self) -> None:
        self.traces: list[int] = []

        @jax.jit
        def act(state):
            self.traces.append(state.shape[0])
            return 2 * state

        self._act = act

    @property
    def metadata(self):
        return {"observation": {"state": array_spec((3,), np.float32)}, "action": array_spec((3,), np.float32)}

    def infer_batch(self, obs):
        return {"actions": self._act(jnp.asarray(obs["state"])), "policy_timing": {"infer_ms": 0.0}}

    def infer(self, obs):
        raise NotImplementedError

    def reset(self):
        pass


def test_warm_up_compiles_every_size_and_load_compiles_nothing():
    policy = JitPolicy()
    PolicyServer(policy, ServerConfig(max_batch=8)).warm_up()
    assert sorted(policy.traces) == [1, 2, 4, 8]
    batcher = Batcher(policy, ["state"], max_batch=8, max_wait_s=0.0, max_queue=64)
    observations = [{"state": np.full(3, i, np.float32)} for i in range(29)]
    results = run_concurrently(batcher, observations)
    assert sorted(policy.traces) == [1, 2, 4, 8]  # whatever sizes the load formed, no new trace
    for obs, result in zip(observations, results, strict=True):
        assert isinstance(result.output["actions"], np.ndarray)  # JAX output converted for the codec
        np.testing.assert_allclose(result.output["actions"], 2 * obs["state"])
