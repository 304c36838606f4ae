"""The server, over real sockets: each test talks to a fake-policy server process on a free loopback port."""

import concurrent.futures
import random
import socket
import threading
import time

import msgpack
import numpy as np
import pytest
import websockets
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from vibe.serving import msgpack_numpy
from vibe.serving.client import WebsocketClientPolicy
from vibe.serving.fake_policy import expected_actions
from vibe.serving.server_process import ServerProcess

OBS_SPEC = "state:4:float32,image:8x8x3:uint8"
ACTION_SHAPE = (8, 2)


def observation(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "state": rng.normal(size=4).astype(np.float32),
        "image": rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8),
    }


def connect(port: int, **kwargs) -> websockets.sync.client.ClientConnection:
    return websockets.sync.client.connect(
        f"ws://127.0.0.1:{port}", compression=None, proxy=None, max_size=None, legacy=True, **kwargs
    )


def infer_raw(ws, obs, timeout: float = 10.0):
    ws.send(msgpack_numpy.packb(obs))
    reply = ws.recv(timeout=timeout)
    return reply if isinstance(reply, str) else msgpack_numpy.unpackb(reply)


def assert_served(port: int, ws=None, seed: int = 7, action_shape: tuple[int, ...] = ACTION_SHAPE) -> None:
    """A valid request on ``ws`` (or a fresh connection) gets the right actions."""
    own = ws is None
    ws = ws or connect(port)
    try:
        if own:
            ws.recv(timeout=10)  # metadata
        obs = observation(seed)
        reply = infer_raw(ws, obs)
        assert not isinstance(reply, str), reply
        np.testing.assert_allclose(reply["actions"], expected_actions(obs, action_shape), rtol=1e-6)
    finally:
        if own:
            ws.close()


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--obs", OBS_SPEC, "--max-batch", "16") as proc:
        yield proc


def test_metadata_frame_comes_first(server):
    with connect(server.port) as ws:
        first = ws.recv(timeout=10)
        assert isinstance(first, bytes)
        assert msgpack_numpy.unpackb(first) == {
            "observation": {
                "state": {"shape": [4], "dtype": "float32"},
                "image": {"shape": [8, 8, 3], "dtype": "uint8"},
            },
            "action": {"shape": [8, 2], "dtype": "float32"},
        }


def test_round_trip_values_and_timing(server):
    with WebsocketClientPolicy("127.0.0.1", server.port) as client:
        assert client.get_server_metadata()["action"] == {"shape": [8, 2], "dtype": "float32"}
        for seed in range(5):
            obs = observation(seed)
            out = client.infer({**obs, "extra": "ignored"})
            assert out["actions"].dtype == np.float32 and out["actions"].shape == ACTION_SHAPE
            np.testing.assert_allclose(out["actions"], expected_actions(obs, ACTION_SHAPE), rtol=1e-6)
            assert out["policy_timing"]["infer_ms"] >= 0
            timing = out["server_timing"]
            assert timing["infer_ms"] >= 0 and timing["batch_size"] == 1
            # openpi: prev_total_ms (the previous loop, send included) is absent on the first reply only.
            assert ("prev_total_ms" in timing) == (seed > 0)


def test_pipelined_requests_are_answered_in_order(server):
    with connect(server.port) as ws:
        ws.recv(timeout=10)
        observations = [observation(seed) for seed in range(6)]
        for obs in observations:
            ws.send(msgpack_numpy.packb(obs))
        for obs in observations:
            reply = msgpack_numpy.unpackb(ws.recv(timeout=10))
            np.testing.assert_allclose(reply["actions"], expected_actions(obs, ACTION_SHAPE), rtol=1e-6)


def test_healthz(server):
    assert server.http_get("/healthz") == (200, "OK\n")


def test_16_clients_1k_requests_no_errors(server):
    requests_before = server.metric("vibe_serving_requests_total")
    deadline = time.monotonic() + 120

    def run(client_id: int) -> int:
        obs = observation(client_id)
        want = expected_actions(obs, ACTION_SHAPE)
        done = 0
        with WebsocketClientPolicy("127.0.0.1", server.port) as client:
            for _ in range(1000):
                out = client.infer(obs)
                np.testing.assert_allclose(out["actions"], want, rtol=1e-6)
                done += 1
                if time.monotonic() > deadline:
                    break
        return done

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        done = list(pool.map(run, range(16)))
    assert done == [1000] * 16
    assert server.metric("vibe_serving_requests_total") - requests_before == 16000


def test_concurrent_clients_are_batched():
    with ServerProcess("--obs", OBS_SPEC, "--delay-ms", "5", "--max-batch", "8") as proc:
        barrier = threading.Barrier(8)

        def run(client_id: int) -> None:
            with WebsocketClientPolicy("127.0.0.1", proc.port) as client:
                barrier.wait(10)
                for i in range(40):
                    obs = observation(client_id * 1000 + i)
                    out = client.infer(obs)
                    np.testing.assert_allclose(out["actions"], expected_actions(obs, ACTION_SHAPE), rtol=1e-6)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(run, range(8)))
        batches = proc.metric("vibe_serving_batch_size_count")
        requests = proc.metric("vibe_serving_batch_size_sum")
        singles = proc.metric('vibe_serving_batch_size_bucket{le="1.0"}')
        assert requests == 8 * 40
        # 8 clients on a 5 ms policy: while one batch runs the others queue, so batches average well above 1.
        assert requests / batches > 1.5, (requests, batches)
        assert singles < batches


def test_slow_reader_and_abrupt_disconnects_do_not_block_others():
    # 1 MiB replies, so a client that never reads fills the socket buffers and its handler blocks in send.
    with ServerProcess("--obs", OBS_SPEC, "--action-shape", "512x512", "--delay-ms", "5") as proc:
        stuck = connect(proc.port, max_queue=1)
        stuck.recv(timeout=10)
        for i in range(20):
            stuck.send(msgpack_numpy.packb(observation(i)))
        for i in range(20):  # requests in flight, then the TCP connection vanishes without a close frame
            raw = connect(proc.port)
            raw.recv(timeout=10)
            raw.send(msgpack_numpy.packb(observation(i)))
            raw.socket.shutdown(socket.SHUT_RDWR)
            raw.socket.close()
        with connect(proc.port) as ws:
            ws.recv(timeout=10)
            for i in range(20):
                obs = observation(100 + i)
                out = infer_raw(ws, obs, timeout=5)
                assert not isinstance(out, str), out
                np.testing.assert_allclose(out["actions"][0, :3], expected_actions(obs, (512, 512))[0, :3], rtol=1e-6)
        stuck.socket.shutdown(socket.SHUT_RDWR)  # a polite close would wait for the stuck server side
        stuck.socket.close()
        assert_served(proc.port, action_shape=(512, 512))


BAD_INPUTS = {
    "not msgpack": (b"\xc1\xc1\xc1", "could not decode"),
    "truncated msgpack": (msgpack_numpy.packb(observation())[:-5], "could not decode"),
    "text frame": ("hello", "text frame"),
    "not a map": (msgpack.packb([1, 2, 3]), "expected a map"),
    "missing key": (msgpack_numpy.packb({"state": observation()["state"]}), "missing observation keys ['image']"),
    "wrong shape": (
        msgpack_numpy.packb({**observation(), "state": np.zeros(3, np.float32)}),
        "observation['state'] has shape (3,); the policy expects (4,)",
    ),
    "wrong dtype": (
        msgpack_numpy.packb({**observation(), "state": np.zeros(4, np.float64)}),
        "observation['state'] has dtype float64; the policy expects float32",
    ),
    "nan": (
        msgpack_numpy.packb({**observation(), "state": np.array([0, np.nan, 0, 0], np.float32)}),
        "observation['state'] has 1 NaN/inf values",
    ),
    "inf": (
        msgpack_numpy.packb({**observation(), "state": np.array([np.inf, 0, -np.inf, 0], np.float32)}),
        "observation['state'] has 2 NaN/inf values",
    ),
    "string instead of array": (msgpack_numpy.packb({**observation(), "image": "cat.png"}), "observation['image']"),
    "object dtype on the wire": (
        msgpack.packb({"state": {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]}, "image": 0}),
        "Unsupported dtype",
    ),
    "shape larger than data": (
        msgpack.packb(
            {"state": {b"__ndarray__": True, b"data": b"\0" * 16, b"dtype": "<f4", b"shape": [10**6]}, "image": 0}
        ),
        "could not decode",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_an_error_frame_and_serving_continues(server, case):
    message, expected = BAD_INPUTS[case]
    with connect(server.port) as ws, connect(server.port) as other:
        ws.recv(timeout=10)
        other.recv(timeout=10)
        ws.send(message)
        reply = ws.recv(timeout=10)
        assert isinstance(reply, str), reply
        assert reply.startswith("bad request: ") and expected in reply, reply
        assert_served(server.port, ws)
        assert_served(server.port, other)


def test_openpi_style_client_sees_error_as_runtime_error(server):
    with WebsocketClientPolicy("127.0.0.1", server.port) as client:
        with pytest.raises(
            RuntimeError, match=r"Error in inference server:\nbad request: observation\['state'\] has shape"
        ):
            client.infer({**observation(), "state": np.zeros(5, np.float32)})
        obs = observation(3)
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, ACTION_SHAPE), rtol=1e-6)


def _garbage(rng: random.Random) -> bytes | str:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 65536))
    if kind == 1:
        return "x" * rng.randrange(1, 4096)
    if kind == 2:
        return b"\x91" * 5000  # nesting deeper than msgpack's stack
    if kind == 3:  # valid msgpack, a header claiming a huge array
        header = {b"__ndarray__": True, b"data": b"", b"dtype": "<f8", b"shape": [2**40]}
        return msgpack.packb({"state": header})
    if kind == 4:  # right keys, random arrays
        return msgpack_numpy.packb({"state": np.zeros(rng.randrange(8), np.float32), "image": np.zeros(3)})
    return msgpack.packb({"image": rng.randbytes(100), "state": None})


def test_garbage_flood_keeps_serving_with_bounded_memory(server):
    assert_served(server.port)
    rss_before = server.rss_mb()
    deadline = time.monotonic() + 20

    def flood(seed: int) -> int:
        rng = random.Random(seed)
        sent = 0
        with connect(server.port) as ws:
            ws.recv(timeout=10)
            while sent < 1000 and time.monotonic() < deadline:
                ws.send(_garbage(rng))
                reply = ws.recv(timeout=10)
                assert isinstance(reply, str) and reply.startswith("bad request: "), reply
                sent += 1
        return sent

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        sent = sum(pool.map(flood, range(4)))
    assert sent >= 2000, sent  # 4 × 1000 unless the box is very slow; at least 2k within 20 s
    assert_served(server.port)
    # Frames are ≤ 64 KiB and never retained: RSS may move by allocator slack, not by what was sent (≥ 60 MiB).
    assert server.rss_mb() - rss_before < 40, (rss_before, server.rss_mb())


def test_oversize_frame_is_closed_with_1009():
    with ServerProcess("--obs", OBS_SPEC, "--max-frame-mb", "0.01") as proc:
        with connect(proc.port) as ws:
            ws.recv(timeout=10)
            ws.send(b"\0" * 20000)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert_served(proc.port)
        assert proc.metric('vibe_serving_errors_total{kind="frame_too_big"}') == 1


def test_auth():
    with ServerProcess("--obs", OBS_SPEC, env={"VIBE_API_KEY": "s3cret-key"}) as proc:
        for headers in (None, {"Authorization": "Api-Key wrong"}, {"Authorization": "s3cret-key"}):
            with pytest.raises(InvalidStatus) as refused:
                connect(proc.port, additional_headers=headers)
            assert refused.value.response.status_code == 401
        with pytest.raises(PermissionError, match="HTTP 401"):
            WebsocketClientPolicy("127.0.0.1", proc.port, api_key="wrong")
        with WebsocketClientPolicy("127.0.0.1", proc.port, api_key="s3cret-key") as client:
            obs = observation(1)
            np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, ACTION_SHAPE), rtol=1e-6)
        assert proc.http_get("/healthz")[0] == 200
        assert proc.http_get("/metrics")[0] == 401
        assert proc.http_get("/metrics", {"Authorization": "Api-Key s3cret-key"})[0] == 200
        assert "API key required" in proc.log() and "s3cret-key" not in proc.log()


def test_no_key_configured_serves_any_client(server):
    with WebsocketClientPolicy("127.0.0.1", server.port, api_key="anything") as client:
        assert client.infer(observation())["actions"].shape == ACTION_SHAPE


def test_sigterm_finishes_the_request_in_flight_and_exits_0():
    proc = ServerProcess("--obs", OBS_SPEC, "--delay-ms", "700", "--max-batch", "1")  # one warm-up call
    with proc:
        ws = connect(proc.port)
        ws.recv(timeout=10)
        obs = observation(5)
        ws.send(msgpack_numpy.packb(obs))
        time.sleep(0.3)  # the request is inside the policy now
        proc.proc.send_signal(15)
        reply = ws.recv(timeout=10)
        assert not isinstance(reply, str), reply
        np.testing.assert_allclose(
            msgpack_numpy.unpackb(reply)["actions"], expected_actions(obs, ACTION_SHAPE), rtol=1e-6
        )
        assert proc.proc.wait(20) == 0
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert "draining" in proc.log()


def test_policy_failure_sends_traceback_then_1011_and_spares_the_batch():
    with ServerProcess("--obs", OBS_SPEC, "--delay-ms", "20", "--fail-value", "-999") as proc:
        bad = {**observation(), "state": np.array([-999, 0, 0, 0], np.float32)}
        with connect(proc.port) as ws, concurrent.futures.ThreadPoolExecutor(4) as pool:
            ws.recv(timeout=10)
            # Good requests from other clients, concurrent with the bad one (often in its batch).
            goods = [pool.submit(assert_served, proc.port, None, seed) for seed in range(4)]
            ws.send(msgpack_numpy.packb(bad))
            reply = ws.recv(timeout=10)
            assert isinstance(reply, str) and "fail_value" in reply and "Traceback" in reply, reply
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            for good in goods:
                good.result(timeout=30)
        assert_served(proc.port)


def test_a_lone_clients_failing_request_gets_the_traceback_then_1011():
    # No delay: a lone client's requests run inline (batching.try_inline), not on the worker thread.
    with ServerProcess("--obs", OBS_SPEC, "--fail-value", "-999") as proc:
        assert_served(proc.port)
        with connect(proc.port) as ws:
            ws.recv(timeout=10)
            ws.send(msgpack_numpy.packb({**observation(), "state": np.array([-999, 0, 0, 0], np.float32)}))
            reply = ws.recv(timeout=10)
            assert isinstance(reply, str) and "fail_value" in reply and "Traceback" in reply, reply
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert_served(proc.port)


def test_overload_gets_busy_not_memory():
    with ServerProcess("--obs", OBS_SPEC, "--delay-ms", "50", "--max-batch", "1", "--max-queue", "1") as proc:
        outcomes: list[str] = []

        def run(seed: int) -> None:
            with WebsocketClientPolicy("127.0.0.1", proc.port) as client:
                for _ in range(3):
                    try:
                        client.infer(observation(seed))
                        outcomes.append("ok")
                    except RuntimeError as e:
                        assert "busy:" in str(e), e
                        outcomes.append("busy")

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(run, range(6)))
        assert "busy" in outcomes and "ok" in outcomes, outcomes
        assert proc.metric('vibe_serving_errors_total{kind="busy"}') == outcomes.count("busy")
        assert_served(proc.port)


def test_connection_limit_answers_503_and_frees_up():
    with ServerProcess("--obs", OBS_SPEC, "--max-connections", "2") as proc:
        first, second = connect(proc.port), connect(proc.port)
        for ws in (first, second):
            ws.recv(timeout=10)
        with pytest.raises(InvalidStatus) as refused:
            connect(proc.port)
        assert refused.value.response.status_code == 503
        assert proc.http_get("/metrics")[0] == 200  # monitoring still works at the limit
        first.close()
        deadline = time.monotonic() + 10
        while proc.metric("vibe_serving_connections") > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_served(proc.port)
        second.close()
