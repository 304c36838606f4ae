"""Norm-stats benchmark: streaming quantiles on 1M×32 drifting floats, against numpy.

    tools/bazelw run //vibe/bench:norm_stats
    tools/bazelw run //vibe/bench:norm_stats -- --rows 200000

The data widens over time (scale 0.1 → 5.1, mean drifting by up to 10·d), the
case where openpi's rebinning histogram loses counts (PR #1041). It is fed in
batches of 256 to vibe's ``RunningStats`` and, for reference, to a
re-implementation of openpi's ``RunningStats`` (5000 bins, rebinned onto the
new range whenever it grows, old counts placed at their old left edges;
quantile = left edge of the first bin whose cumulative count reaches q·n).
The table gives seconds of the streaming pass, the max |error| of q01/q99
over all dimensions as a fraction of each dimension's range (goal < 1e-3),
and the max relative error of mean and std. Prints a table, writes JSON.
"""

import dataclasses
import time

import numpy as np
import tyro

from vibe.bench import report
from vibe.core.usage import bazel_prog
from vibe.data import normalize
from vibe.train.runner import user_path


@dataclasses.dataclass(frozen=True)
class Args:
    rows: int = 1_000_000  # samples
    dims: int = 32  # features per sample
    batch: int = 256  # rows per update
    openpi: bool = True  # also time the openpi-style rebinning histogram
    out: str = "bench_results/norm_stats.json"  # JSON output, relative to where the command runs


def drifting(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    """``[rows, dims]`` float32 whose spread and mean grow with the row index."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None]
    return (rng.standard_normal((rows, dims), dtype=np.float32) * (0.1 + 5 * t) + 10 * t * np.arange(dims)).astype(
        np.float32
    )


class OpenpiStats:
    """openpi's histogram quantiles as reference/openpi.md §6 describes them (for comparison only)."""

    def __init__(self, bins: int = 5000):
        self.bins = bins
        self.count = 0
        self.hist: np.ndarray | None = None

    def _bin(self, values: np.ndarray, lo: np.ndarray, hi: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Counts of ``values`` ``[n, d]`` on each dimension's ``linspace(lo, hi, bins + 1)`` grid."""
        d = values.shape[1]
        j = np.clip(np.floor((values - lo) / (hi - lo) * self.bins), 0, self.bins - 1).astype(np.int64)
        flat = (j + np.arange(d) * self.bins).ravel()
        w = None if weights is None else weights.ravel()
        return np.bincount(flat, weights=w, minlength=d * self.bins).reshape(d, self.bins)

    def update(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        lo_b, hi_b = x.min(0), x.max(0)
        if self.hist is None:
            self.lo, self.hi = lo_b - 1e-10, hi_b + 1e-10
            self.hist = np.zeros((x.shape[1], self.bins))
        elif (lo_b < self.lo).any() or (hi_b > self.hi).any():
            # Rebin every dimension onto the new range: old counts land at their old left edges.
            new_lo, new_hi = np.minimum(self.lo, lo_b), np.maximum(self.hi, hi_b)
            old_edges = self.lo + (self.hi - self.lo) * (np.arange(self.bins)[:, None] / self.bins)  # [bins, d]
            self.hist = self._bin(old_edges, new_lo, new_hi, weights=self.hist.T)
            self.lo, self.hi = new_lo, new_hi
        self.hist += self._bin(x, self.lo, self.hi)
        self.count += x.shape[0]

    def quantile(self, q: float) -> np.ndarray:
        assert self.hist is not None
        cum = np.cumsum(self.hist, axis=1)
        j = np.argmax(cum >= q * self.count, axis=1)
        width = (self.hi - self.lo) / self.bins
        return self.lo + j * width


def main(args: Args) -> None:
    x = drifting(args.rows, args.dims)
    start = time.perf_counter()
    ours = normalize.RunningStats()
    for i in range(0, args.rows, args.batch):
        ours.update(x[i : i + args.batch])
    got = ours.get()
    seconds = time.perf_counter() - start

    start = time.perf_counter()
    exact = {q: np.quantile(x, q, axis=0).astype(np.float64) for q in normalize.QUANTILES}
    numpy_seconds = time.perf_counter() - start
    span = x.max(0).astype(np.float64) - x.min(0)
    x64 = x.astype(np.float64)

    def q_error(values: dict[float, np.ndarray]) -> float:
        return max(float(np.max(np.abs(values[q] - exact[q]) / span)) for q in normalize.QUANTILES)

    vibe_error = q_error({0.01: got.q01, 0.99: got.q99})  # type: ignore[dict-item]
    mean_error = float(np.max(np.abs(got.mean - x64.mean(0)) / np.abs(x64.mean(0)).clip(1e-12)))
    std_error = float(np.max(np.abs(got.std - x64.std(0)) / x64.std(0)))
    rows = [
        ("vibe RunningStats: seconds | max q01/q99 error / range", f"{seconds:.2f} | {vibe_error:.1e}"),
        ("vibe RunningStats: max rel. error of mean | std", f"{mean_error:.1e} | {std_error:.1e}"),
        ("numpy.quantile on the whole array (reference): seconds", f"{numpy_seconds:.2f}"),
    ]
    payload = {
        "args": dataclasses.asdict(args),
        "vibe_seconds": seconds,
        "vibe_max_quantile_error_over_range": vibe_error,
        "vibe_mean_rel_error": mean_error,
        "vibe_std_rel_error": std_error,
        "numpy_quantile_seconds": numpy_seconds,
    }
    if args.openpi:
        start = time.perf_counter()
        theirs = OpenpiStats()
        for i in range(0, args.rows, args.batch):
            theirs.update(x[i : i + args.batch])
        openpi_seconds = time.perf_counter() - start
        openpi_error = q_error({q: theirs.quantile(q) for q in normalize.QUANTILES})
        rows.append(
            ("openpi-style rebinning: seconds | max error / range", f"{openpi_seconds:.2f} | {openpi_error:.1e}")
        )
        payload |= {"openpi_seconds": openpi_seconds, "openpi_max_quantile_error_over_range": openpi_error}
    report.print_table(rows, title=f"norm stats: {args.rows:,}×{args.dims} drifting float32, batches of {args.batch}")
    report.write_json(user_path(args.out), payload)


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
