"""The batcher in-process: padding to fixed sizes, per-row results, failure isolation, a bounded queue."""

import asyncio
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vibe.policies.policy import array_spec
from vibe.serving.batching import INLINE_MAX_S, Batcher, Busy, PolicyError, batch_sizes
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


class ThreadRecordingPolicy(FakePolicy):
    """FakePolicy that records which thread ran each ``infer_batch``."""

    def __init__(self, delay_ms: float = 0.0) -> None:
        super().__init__(SPEC, (2,), delay_ms=delay_ms)
        self.threads: list[int] = []

    def infer_batch(self, obs):
        self.threads.append(threading.get_ident())
        return super().infer_batch(obs)


def test_a_lone_client_of_a_fast_policy_runs_inline_and_anything_else_goes_to_the_worker():
    clients = [1]
    policy = ThreadRecordingPolicy()
    batcher = Batcher(policy, ["state"], max_batch=4, max_wait_s=0.0, max_queue=8, active_clients=lambda: clients[0])
    obs = {"state": np.array([1, 2, 3], np.float32)}
    assert batcher.try_inline(obs) is None  # nothing measured yet
    batcher.warm_up(obs)
    assert policy.batch_sizes == [1, 2, 4, 1]  # every size, then batch 1 timed after its compile
    policy.threads.clear()
    result = batcher.try_inline(obs)
    assert result is not None and result.batch_size == 1 and result.queue_ms == 0.0
    np.testing.assert_allclose(result.output["actions"], expected_actions(obs, (2,)))
    assert policy.threads == [threading.get_ident()]
    clients[0] = 2  # another client is active: batching beats the saved hop
    assert batcher.try_inline(obs) is None

    async def queued():
        clients[0] = 1
        batcher.submit(obs)  # the worker never started: this stays queued
        assert batcher.try_inline(obs) is None

    asyncio.run(queued())
    assert len(policy.threads) == 1


def test_a_slow_policy_never_runs_inline():
    policy = ThreadRecordingPolicy(delay_ms=2 * INLINE_MAX_S * 1e3)
    batcher = Batcher(policy, ["state"], max_batch=2, max_wait_s=0.0, max_queue=8)
    obs = {"state": np.zeros(3, np.float32)}
    batcher.warm_up(obs)
    assert batcher.try_inline(obs) is None
    (result,) = run_concurrently(batcher, [obs])
    assert result.batch_size == 1 and policy.threads[-1] != threading.get_ident()  # the worker ran it


def test_an_inline_call_that_raises_is_a_policy_error_with_its_traceback():
    policy = FakePolicy(SPEC, (2,), fail_value=-1.0)
    batcher = Batcher(policy, ["state"], max_batch=2, max_wait_s=0.0, max_queue=8)
    batcher.warm_up({"state": np.zeros(3, np.float32)})
    with pytest.raises(PolicyError, match=r"(?s)Traceback.*fail_value"):
        batcher.try_inline({"state": np.array([-1.0, 0, 0], np.float32)})
    assert batcher.try_inline({"state": np.zeros(3, np.float32)}) is not None  # the next request is served
