"""The client: reconnect after a server restart, receive and connect timeouts, ActionChunkBroker."""

import concurrent.futures
import time

import numpy as np
import pytest

from vibe.serving.client import ActionChunkBroker, WebsocketClientPolicy
from vibe.serving.fake_policy import FakePolicy, expected_actions
from vibe.serving.server_process import ServerProcess

OBS = {"state": np.array([1, 2, 3, 4], np.float32)}


def test_reconnects_after_the_server_restarts():
    first = ServerProcess("--obs", "state:4:float32")
    with first:
        port = first.port
        client = WebsocketClientPolicy("127.0.0.1", port, connect_timeout_s=30)
        np.testing.assert_allclose(client.infer(OBS)["actions"], expected_actions(OBS, (8, 2)))
        assert first.terminate() == 0
    # The next server comes up a little later on the same port, while infer is already retrying.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        later = pool.submit(
            lambda: (time.sleep(0.5), ServerProcess("--obs", "state:4:float32", "--port", str(port)))[1]
        )
        obs = {"state": np.array([5, 6, 7, 8], np.float32)}
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, (8, 2)))
        with later.result(timeout=30) as second:
            assert second.port == port
            assert client.get_server_metadata()["observation"] == {"state": {"shape": [4], "dtype": "float32"}}
            client.close()


def test_receive_timeout_then_a_fresh_reply():
    with ServerProcess("--obs", "state:4:float32", "--delay-ms", "1000", "--max-batch", "1") as proc:
        client = WebsocketClientPolicy("127.0.0.1", proc.port, recv_timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="no reply"):
            client.infer(OBS)
        assert time.monotonic() - start < 0.9
        # The late reply to the first request must not answer the next one.
        client.recv_timeout_s = 10
        obs = {"state": np.array([9, 9, 9, 9], np.float32)}
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, (8, 2)))
        client.close()


def test_connect_timeout_when_nothing_listens():
    with ServerProcess("--obs", "state:4:float32") as proc:
        port = proc.port
        assert proc.terminate() == 0
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="no policy server"):
        WebsocketClientPolicy("127.0.0.1", port, connect_timeout_s=0.5)
    assert time.monotonic() - start < 5


def test_action_chunk_broker_hands_out_one_step_per_call():
    class Counting:
        def __init__(self) -> None:
            self.policy = FakePolicy({"state": ((4,), np.dtype(np.float32))}, (3, 2))
            self.calls = 0

        def infer(self, obs):
            self.calls += 1
            return self.policy.infer(obs)

        def reset(self):
            pass

    inner = Counting()
    broker = ActionChunkBroker(inner, action_horizon=3)
    chunk = expected_actions(OBS, (3, 2))
    steps = [broker.infer(OBS) for _ in range(4)]
    assert inner.calls == 2
    for i, step in enumerate(steps):
        np.testing.assert_allclose(step["actions"], chunk[i % 3])
        assert step["policy_timing"]["infer_ms"] >= 0  # non-array leaves pass through
    broker.reset()
    broker.infer(OBS)
    assert inner.calls == 3
