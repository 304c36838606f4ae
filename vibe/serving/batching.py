"""Dynamic batching of single observations into ``Policy.infer_batch`` calls, on one worker thread.

Requests arrive from the event loop (``submit``) and wait in a bounded queue. The
worker takes the requests queued when it becomes free; if fewer than the number
of recently active clients are there, it waits for more until the oldest has
waited ``max_wait_s``, so a lone client never pays the wait and 8 clients ride in
one batch. A batch of ``n`` is padded with copies of its last row up to the
smallest size in ``batch_sizes(max_batch)`` (powers of two, and ``max_batch``),
so a jitted policy compiles once per size at warm-up and never under load.

When a batch raises, its requests are retried one at a time (batch size 1), so
one observation that breaks the policy fails only its own request.

One exception to "on the worker thread": a lone client of a fast policy. When no
other client is active, nothing is queued or running, and the policy's batch-1
call has been measured under ``INLINE_MAX_S``, ``try_inline`` runs the request on
the caller's thread (the event loop). The hop to the worker and back costs more
than such a call: 0.07-0.1 ms on 2 cores (a submit → result round trip of 0.105 ms
around a 0.03 ms call), against a bare websockets echo of 0.16 ms. A second
active client, a queued request or a slower policy sends every request to the
worker, so no client ever waits behind another's inference for more than
``INLINE_MAX_S``.
"""

import asyncio
import collections
import contextlib
import dataclasses
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from vibe.policies.policy import Policy

logger = logging.getLogger(__name__)

# Slowest batch-1 call (a running estimate) that a lone client's request may run inline (module docstring).
INLINE_MAX_S = 0.5e-3


class Busy(Exception):
    """The queue is full: the server is overloaded and refuses the request."""


class PolicyError(Exception):
    """The policy raised on this request; the message is the traceback."""


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Padded batch sizes: 1, 2, 4, ... below ``max_batch``, then ``max_batch`` (e.g. 6 → (1, 2, 4, 6))."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = [1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch]
    return (*sizes, max_batch)


class Result(NamedTuple):
    """One request's share of a batch: its rows of the output, and how the batch went.

    A NamedTuple, not a frozen dataclass: it is built once per request on the serving path, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) costs several times as much.
    """

    output: dict[str, Any]
    infer_ms: float  # wall time of the infer_batch call this request rode in
    queue_ms: float  # submit → start of that call
    batch_size: int  # real requests in the batch (before padding)


@dataclasses.dataclass
class _Request:
    obs: dict[str, np.ndarray]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float


def _row(value: Any, i: int, size: int) -> Any:
    """Row ``i`` of every array leaf with a leading axis of ``size``; other leaves unchanged."""
    if isinstance(value, dict):
        return {k: _row(v, i, size) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == size:
        return value[i]
    return value


def _to_numpy(value: Any) -> Any:
    """JAX (or any array-like with a shape) → numpy, recursively through dicts."""
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if not isinstance(value, np.ndarray | np.generic) and hasattr(value, "shape") and hasattr(value, "__array__"):
        return np.asarray(value)
    return value


def _resolve(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the connection went away and cancelled it
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Batcher:
    """Owns the worker thread that calls ``policy.infer_batch``."""

    def __init__(
        self,
        policy: Policy,
        keys: list[str],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        active_clients: Callable[[], int] = lambda: 1,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
    ) -> None:
        self._policy = policy
        self._keys = keys
        self._sizes = batch_sizes(max_batch)
        # The padded size of a batch of n requests, by n (a lookup: this runs once per request).
        self._padded = tuple(next(s for s in self._sizes if s >= n) for n in range(max_batch + 1))
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._active_clients = active_clients
        self._on_batch = on_batch
        self._queue: collections.deque[_Request] = collections.deque()
        self._cond = threading.Condition()
        self._policy_lock = threading.Lock()  # infer_batch runs once at a time, on the worker or inline
        self._lone_s = float("inf")  # running estimate of a batch-1 call's seconds; inf until measured
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="policy-batcher", daemon=True)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finishes what is queued, then ends the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def submit(self, obs: dict[str, np.ndarray]) -> asyncio.Future:
        """Queues one validated observation (call on the event loop); raises ``Busy`` when the queue is full."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if len(self._queue) >= self._max_queue:
                raise Busy(f"busy: {len(self._queue)} requests queued (max_queue {self._max_queue}); retry later")
            self._queue.append(_Request(obs, future, loop, time.monotonic()))
            self._cond.notify()
        return future

    def warm_up(self, row: dict[str, np.ndarray]) -> None:
        """Runs every padded size once (a jitted policy compiles each now), then times batch 1 afresh."""
        for size in self._sizes:
            self.run_padded([row] * size)
        self._lone_s = float("inf")  # the first call compiled: not what a request costs
        self.run_padded([row])

    def try_inline(self, obs: dict[str, np.ndarray]) -> Result | None:
        """A lone client's request run on this thread, or None: submit it instead (module docstring)."""
        if self._queue or self._lone_s > INLINE_MAX_S or self._policy_lock.locked() or self._active_clients() > 1:
            return None
        try:
            output, size, seconds = self.run_padded([obs])
        except Exception:
            raise PolicyError(traceback.format_exc()) from None  # as the worker reports it
        self._on_batch(1, seconds)
        return Result(_row(output, 0, size), seconds * 1e3, 0.0, 1)

    def run_padded(self, rows: list[dict[str, np.ndarray]]) -> tuple[dict[str, Any], int, float]:
        """Stacks ``rows``, pads to a batch size, runs the policy: (numpy output, padded size, seconds)."""
        n = len(rows)
        size = self._padded[n]
        if size == 1:  # a lone request: a leading axis on a copy (np.stack's result) at a tenth of its cost
            batch = {k: rows[0][k][None].copy() for k in self._keys}
        else:
            pad = [rows[-1]] * (size - n)
            batch = {k: np.stack([r[k] for r in rows + pad]) for k in self._keys}
        with self._policy_lock:
            start = time.monotonic()
            output = _to_numpy(self._policy.infer_batch(batch))
            seconds = time.monotonic() - start
        if size == 1:
            self._lone_s = seconds if self._lone_s == float("inf") else 0.9 * self._lone_s + 0.1 * seconds
        return output, size, seconds

    def _take(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].enqueued + self._max_wait_s
            wanted = min(self._max_batch, max(1, self._active_clients()))
            while len(self._queue) < wanted and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            n = min(len(self._queue), self._max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._run(batch)
            except BaseException:  # never let the worker die: the server would hang every client
                logger.exception("batch worker failed")

    def _run(self, batch: list[_Request]) -> None:
        start = time.monotonic()
        try:
            output, size, seconds = self.run_padded([r.obs for r in batch])
        except Exception:
            if len(batch) > 1:
                for request in batch:  # isolate the observation that breaks the policy
                    self._run([request])
                return
            self._deliver(batch[0], None, PolicyError(traceback.format_exc()))
            return
        self._on_batch(len(batch), seconds)
        for i, request in enumerate(batch):
            result = Result(_row(output, i, size), seconds * 1e3, (start - request.enqueued) * 1e3, len(batch))
            self._deliver(request, result, None)

    @staticmethod
    def _deliver(request: _Request, result: Result | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is waiting any more
            request.loop.call_soon_threadsafe(_resolve, request.future, result, error)
