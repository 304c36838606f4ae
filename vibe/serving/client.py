"""Client side of the protocol in server.py (and of openpi's server): a policy that lives behind a websocket.

``WebsocketClientPolicy`` behaves as openpi-client's: the constructor connects
(waiting for the server), reads the metadata frame, and ``infer(obs)`` sends one
msgpack-numpy observation and returns the reply; a text reply raises
``RuntimeError("Error in inference server:\\n...")``. Beyond openpi-client:

* a dropped connection (server restart, network blip) is reconnected with
  exponential backoff and the request is sent again once, so ``infer`` may reach
  the policy twice for one call (harmless for a stateless policy);
* ``recv_timeout_s`` bounds the wait for a reply: ``TimeoutError``, and the
  connection is dropped (a late reply must not answer the next request);
* a 401 at the handshake raises ``PermissionError`` at once instead of retrying.

``ActionChunkBroker`` hands out one step of an action chunk per call, as
openpi-client's does.
"""

import logging
import time
from typing import Any

import numpy as np
import websockets
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from vibe.serving import msgpack_numpy

logger = logging.getLogger(__name__)


class WebsocketClientPolicy:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
        *,
        recv_timeout_s: float | None = 30.0,  # longest wait for one reply; None waits forever
        connect_timeout_s: float | None = None,  # longest wait for the server to come up; None waits forever
        max_backoff_s: float = 5.0,  # retry delays double from 0.05 s up to this
    ) -> None:
        self._uri = host if host.startswith("ws") else f"ws://{host}"
        if port is not None:
            self._uri += f":{port}"
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self.recv_timeout_s = recv_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_backoff_s = max_backoff_s
        self._packer = msgpack_numpy.Packer()
        self._ws: websockets.sync.client.ClientConnection | None = None
        self._metadata: dict = {}
        self._connect()

    def get_server_metadata(self) -> dict:
        return self._metadata

    def _connect(self) -> None:
        deadline = None if self._connect_timeout_s is None else time.monotonic() + self._connect_timeout_s
        delay = 0.05
        while True:
            try:
                ws = websockets.sync.client.connect(
                    self._uri,
                    compression=None,
                    max_size=None,
                    additional_headers=self._headers,
                    proxy=None,
                    close_timeout=1,  # dropping a connection to a stuck server must not hang the caller
                    legacy=True,  # a long-lived connection, closed by _drop
                )
                try:
                    self._metadata = msgpack_numpy.unpackb(ws.recv(timeout=self.recv_timeout_s))
                except BaseException:
                    ws.close()
                    raise
                self._ws = ws
                return
            except InvalidStatus as e:
                if e.response.status_code in (401, 403):
                    raise PermissionError(
                        f"policy server at {self._uri} refused the API key (HTTP {e.response.status_code})"
                    ) from None
                error: Exception = e  # e.g. 503 while a server shuts down
            except (OSError, TimeoutError, websockets.ConnectionClosed) as e:
                error = e
            if deadline is not None and time.monotonic() + delay > deadline:
                raise ConnectionError(f"no policy server at {self._uri} after {self._connect_timeout_s} s: {error}")
            logger.info("waiting for policy server at %s (%s); retrying in %.2f s", self._uri, error, delay)
            time.sleep(delay)
            delay = min(2 * delay, self._max_backoff_s)

    def _drop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def infer(self, obs: dict) -> dict:
        data = self._packer.pack(obs)
        for attempt in range(2):
            if self._ws is None:
                self._connect()
            assert self._ws is not None
            try:
                self._ws.send(data)
                response = self._ws.recv(timeout=self.recv_timeout_s)
            except TimeoutError:
                self._drop()
                raise TimeoutError(f"no reply from {self._uri} within {self.recv_timeout_s} s") from None
            except websockets.ConnectionClosed as e:
                self._drop()
                if attempt:
                    raise
                logger.warning("connection to %s lost (%s); reconnecting", self._uri, e)
                continue
            if isinstance(response, str):
                raise RuntimeError(f"Error in inference server:\n{response}")
            return msgpack_numpy.unpackb(response)
        raise AssertionError("unreachable")

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> "WebsocketClientPolicy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step(value: Any, i: int) -> Any:
    if isinstance(value, dict):
        return {k: _step(v, i) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_step(v, i) for v in value)
    if isinstance(value, np.ndarray):
        return value[i, ...]
    return value


class ActionChunkBroker:
    """Returns step ``i`` of every array of the current chunk per call; asks ``policy`` for a new chunk when used up.

    Assumes the leading axis of every array in the reply is the chunk (the action horizon).
    """

    def __init__(self, policy: Any, action_horizon: int) -> None:
        self._policy = policy
        self._action_horizon = action_horizon
        self._step = 0
        self._chunk: dict | None = None

    def infer(self, obs: dict) -> dict:
        if self._chunk is None:
            self._chunk = self._policy.infer(obs)
            self._step = 0
        result = _step(self._chunk, self._step)
        self._step += 1
        if self._step >= self._action_horizon:
            self._chunk = None
        return result

    def reset(self) -> None:
        self._policy.reset()
        self._chunk = None
        self._step = 0
