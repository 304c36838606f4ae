"""Test and benchmark helper: a policy server in its own process on a free loopback port.

The process is ``sys.executable -m vibe.serving.fake_policy --port 0`` (or another
server module: ``module="vibe.serving.serve"`` serves a checkpoint) run from the
workspace root (under ``bazel test`` the runfiles tree, whose interpreter has every
locked distribution), so no ``data`` dependency on a binary is needed; the port the
server picked is read from its log.
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import vibe

ROOT = pathlib.Path(vibe.__file__).parent.parent  # the workspace (or runfiles) root
_READY = re.compile(r"serving on ws://[^:]+:(\d+)")


class ServerProcess:
    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout_s: float = 30.0,  # until the log says "serving on" (a checkpoint's server compiles first)
        module: str = "vibe.serving.fake_policy",
    ) -> None:
        fd, self._log_path = tempfile.mkstemp(prefix="policy_server_", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=fd,
            stderr=subprocess.STDOUT,
        )
        os.close(fd)
        deadline = time.monotonic() + timeout_s
        while (match := _READY.search(self.log())) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{module} did not start:\n{self.log()}")
            time.sleep(0.02)
        self.port = int(match.group(1))

    def log(self) -> str:
        return pathlib.Path(self._log_path).read_text()

    def http_get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str) -> float:
        """A sample's value from /metrics (e.g. ``vibe_serving_batch_size_count``)."""
        _, text = self.http_get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(f"{name} not in /metrics:\n{text}")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kb / 1024

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        os.unlink(self._log_path)
