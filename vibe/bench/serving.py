"""Benchmark P8: websocket serving over loopback — round-trip latency and requests/s.

    tools/bazelw run //vibe/bench:serving
    tools/bazelw run //vibe/bench:serving -- --requests 3000 --out /tmp/p8.json

Each row starts a fake-policy server process (vibe/serving/fake_policy.py, the
real server code around a numpy policy) and drives it with N client processes,
each running the real ``WebsocketClientPolicy`` in a closed loop. Rows:

  (a) tiny policy (4 floats in, 8×2 out), 1 client: p50/p99 round trip and the
      overhead beyond the server's ``infer_ms`` at p50 (goal ≤ 0.1 ms);
  (b) a policy that takes 5 ms per ``infer_batch`` call, 8 clients: requests/s
      (goal ≥ 690; one request at a time would give 200) and p50 (goal ≤ 12 ms);
  (c) a 64×64×3 uint8 image observation (plus 8 floats), 1 and 8 clients, no
      delay: what the codec and transport cost for an image.

The floor row is a bare websockets echo server (no codec, no policy, no
thread) answered through a plain websockets client: what this machine's Python
websockets round trip costs before vibe adds anything.

The first ``warmup`` requests of every client are not timed.
"""

import dataclasses
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import tyro
import websockets.sync.client

from vibe.bench import report
from vibe.serving import msgpack_numpy
from vibe.serving.client import WebsocketClientPolicy
from vibe.serving.server_process import ServerProcess


@dataclasses.dataclass(frozen=True)
class Args:
    requests: int = 2000  # timed requests per row, split over the row's clients
    warmup: int = 50  # untimed requests per client first
    max_batch: int = 8  # server --max-batch
    max_wait_ms: float = 2.0  # server --max-wait-ms
    out: str = ""  # JSON output (default bench_results/P8.json), relative to where the command runs


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    obs: str  # fake_policy --obs
    delay_ms: float
    clients: int


ROWS = [
    Row("(a) tiny policy, 1 client", "state:4:float32", 0.0, 1),
    Row("(b) 5 ms policy, 8 clients", "state:4:float32", 5.0, 8),
    Row("(c) 64x64x3 image, 1 client", "image:64x64x3:uint8,state:8:float32", 0.0, 1),
    Row("(c) 64x64x3 image, 8 clients", "image:64x64x3:uint8,state:8:float32", 0.0, 8),
]


def _observation(spec: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = {}
    for item in spec.split(","):
        key, shape, dtype = item.split(":")
        dims = tuple(int(d) for d in shape.split("x"))
        obs[key] = (rng.integers(0, 255, dims) if dtype == "uint8" else rng.normal(size=dims)).astype(dtype)
    return obs


def _client(port: int, spec: str, warmup: int, requests: int, start_at: float) -> dict[str, list[float]]:
    """One closed-loop client (its own process): per-request round trip and server timings, in ms."""
    obs = _observation(spec)
    with WebsocketClientPolicy("127.0.0.1", port) as client:
        for _ in range(warmup):
            client.infer(obs)
        time.sleep(max(0.0, start_at - time.time()))  # every client starts timing together
        rtt, infer, batch = [], [], []
        for _ in range(requests):
            t0 = time.perf_counter()
            out = client.infer(obs)
            rtt.append((time.perf_counter() - t0) * 1e3)
            infer.append(out["server_timing"]["infer_ms"])
            batch.append(out["server_timing"]["batch_size"])
    return {"rtt_ms": rtt, "infer_ms": infer, "batch_size": batch, "seconds": [sum(rtt) / 1e3]}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_row(row: Row, args: Args, pool: Any) -> dict[str, Any]:
    server_args = ["--obs", row.obs, "--delay-ms", str(row.delay_ms), "--action-shape", "8x2"]
    server_args += ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    with ServerProcess(*server_args) as server:
        per_client = max(1, args.requests // row.clients)
        start_at = time.time() + 1.0 + 0.05 * row.clients
        jobs = [(server.port, row.obs, args.warmup, per_client, start_at) for _ in range(row.clients)]
        t0 = time.time()
        results = pool.starmap(_client, jobs)
        wall = time.time() - max(t0, start_at)
        rss = server.rss_mb()
    rtt = [x for r in results for x in r["rtt_ms"]]
    infer = [x for r in results for x in r["infer_ms"]]
    overhead = [a - b for r in results for a, b in zip(r["rtt_ms"], r["infer_ms"], strict=True)]
    slowest_client_s = max(r["seconds"][0] for r in results)
    return {
        "clients": row.clients,
        "requests": len(rtt),
        "rtt_p50_ms": _percentile(rtt, 50),
        "rtt_p99_ms": _percentile(rtt, 99),
        "infer_p50_ms": _percentile(infer, 50),
        "overhead_p50_ms": _percentile(overhead, 50),
        "requests_per_second": len(rtt) / slowest_client_s,
        "wall_seconds": wall,
        "mean_batch_size": statistics.fmean(x for r in results for x in r["batch_size"]),
        "server_rss_mb": rss,
    }


_ECHO_SERVER = """
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


def echo_floor(args: Args) -> dict[str, Any]:
    """p50/p99 of a bare websockets echo of the tiny observation, 1 client."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        message = msgpack_numpy.packb(_observation(ROWS[0].obs))
        uri = f"ws://127.0.0.1:{port}"
        with websockets.sync.client.connect(uri, compression=None, proxy=None) as ws:
            rtt = []
            for i in range(args.warmup + args.requests):
                t0 = time.perf_counter()
                ws.send(message)
                ws.recv()
                if i >= args.warmup:
                    rtt.append((time.perf_counter() - t0) * 1e3)
    finally:
        proc.kill()
        proc.wait()
    return {"rtt_p50_ms": _percentile(rtt, 50), "rtt_p99_ms": _percentile(rtt, 99), "requests": len(rtt)}


def main(args: Args) -> None:
    # Clients are processes (not threads) so the clients' GIL is not what is measured.
    context = multiprocessing.get_context("spawn")
    results = {}
    with context.Pool(max(r.clients for r in ROWS)) as pool:
        for row in ROWS:
            results[row.name] = run_row(row, args, pool)
    floor = echo_floor(args)
    rows = [
        (
            f"{name}: p50 | p99 ms | req/s | infer p50 ms | overhead p50 ms | mean batch",
            f"{r['rtt_p50_ms']:.3f} | {r['rtt_p99_ms']:.3f} | {r['requests_per_second']:,.0f} | "
            f"{r['infer_p50_ms']:.3f} | {r['overhead_p50_ms']:.3f} | {r['mean_batch_size']:.2f}",
        )
        for name, r in results.items()
    ]
    rows.append(
        (
            "floor: bare websockets echo, 1 client: p50 | p99 ms",
            f"{floor['rtt_p50_ms']:.3f} | {floor['rtt_p99_ms']:.3f}",
        )
    )
    a, b = results[ROWS[0].name], results[ROWS[1].name]
    rows.append(("(a) overhead beyond infer_ms at p50 (goal <= 0.1 ms)", f"{a['overhead_p50_ms']:.3f} ms"))
    rows.append(
        ("(b) req/s (goal >= 690) | p50 (goal <= 12 ms)", f"{b['requests_per_second']:,.0f} | {b['rtt_p50_ms']:.2f}")
    )
    report.print_table(
        rows,
        title=f"P8 websocket serving on loopback, {args.requests} timed requests per row, "
        f"max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms, {os.cpu_count()} CPUs",
    )
    payload = {"protocol": "P8", "args": dataclasses.asdict(args), "rows": results, "echo_floor": floor}
    out = args.out or "bench_results/P8.json"
    report.write_json(os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), out), payload)


if __name__ == "__main__":
    main(tyro.cli(Args))
