"""Normalization statistics: ``NormStats`` (mean, std, q01, q99) from one streaming pass.

    stats = RunningStats()
    for batch in batches:                  # [..., d] each; leading axes are flattened
        stats.update(batch)
    norm = stats.get()                     # NormStats, float64 arrays of shape [d]
    save({"state": norm}, "assets/x")      # assets/x/norm_stats.json, openpi's layout

Moments are merged batch by batch with Chan et al.'s parallel update in
float64 (Chan, Golub, LeVeque 1979, eq. 2.1), so mean and std match numpy to
~1e-12 relative whatever the batch size.

Quantiles are exact while the samples fit ``exact_cap`` rows (they are kept and
``np.quantile`` is taken over all of them: the same numbers numpy gives). Past
the cap they move to a per-dimension histogram of ``bins`` bins. When a value
falls outside a dimension's range, its bins are merged 2:1 (width doubles,
anchored at the side that does not grow) until the range covers it: counts
are only ever added, never dropped, unlike openpi's rebinning onto a new grid
(PR #1041, which loses counts when the range widens). The error of a
histogram quantile is below one bin width, ``< 2·range/bins``. Quantiles
interpolate within the bin the way ``np.quantile``'s default (linear) method
interpolates between order statistics.

Constant dimensions: ``std`` is reported as computed (0), and ``q01 == q99``.
``transforms.Normalize`` divides such a dimension by 1 instead of by ~0 (see
``DEGENERATE_SCALE``), so a constant gripper dimension normalizes to 0 and
unnormalizes back exactly.
"""

import dataclasses
import json
import os
from collections.abc import Mapping

import numpy as np

QUANTILES = (0.01, 0.99)
FILENAME = "norm_stats.json"
# A std or q99 - q01 at or below this counts as a constant dimension (see module docstring).
DEGENERATE_SCALE = 1e-6


@dataclasses.dataclass(frozen=True)
class NormStats:
    """Per-dimension statistics of one field, each ``[d]`` (float64 unless loaded from elsewhere).

    Attributes:
        mean: mean over all samples.
        std: population standard deviation (ddof 0, like openpi); 0 on constant dimensions.
        q01: 1st percentile (``np.quantile(x, 0.01)``); None when unknown (z-score stats only).
        q99: 99th percentile; None when unknown.
    """

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None

    def to_json(self) -> dict[str, list[float]]:
        out = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.q01 is not None and self.q99 is not None:
            out |= {"q01": self.q01.tolist(), "q99": self.q99.tolist()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, list[float]]) -> "NormStats":
        def get(name: str) -> np.ndarray | None:
            return None if data.get(name) is None else np.asarray(data[name], np.float64)

        mean, std = get("mean"), get("std")
        if mean is None or std is None:
            raise ValueError(f"norm stats entry with keys {sorted(data)} lacks 'mean' or 'std'; rewrite the file")
        return cls(mean=mean, std=std, q01=get("q01"), q99=get("q99"))


class RunningStats:
    """Streaming mean, std, q01 and q99 of ``[..., d]`` batches (see the module docstring).

    Args:
        exact_cap: rows kept verbatim for exact quantiles; past it, the histogram takes over.
        bins: histogram bins per dimension (error < 2·range/bins).
        flush_rows: rows buffered before they are binned (one ``bincount`` per flush, not per batch).
    """

    def __init__(self, exact_cap: int = 100_000, bins: int = 1 << 15, flush_rows: int = 1 << 16):
        if bins < 2 or bins % 2:
            raise ValueError(f"bins={bins}: pass an even number of histogram bins, at least 2")
        self._exact_cap, self._bins, self._flush_rows = exact_cap, bins, flush_rows
        self._d: int | None = None
        self._count = 0
        self._mean: np.ndarray = np.zeros(0)
        self._m2: np.ndarray = np.zeros(0)
        self._min: np.ndarray = np.zeros(0)
        self._max: np.ndarray = np.zeros(0)
        # Rows not yet folded into the moments/histogram: small batches are processed a block at a
        # time, so the per-batch cost is one copy (0.5 ms → ~0.1 ms per 256×32 batch).
        self._buffer: list[np.ndarray] = []
        self._buffer_rows = 0
        self._kept: list[np.ndarray] = []  # every processed row while in exact mode
        self._kept_rows = 0
        self._hist: np.ndarray | None = None  # [d, bins] int64 counts once past exact_cap
        self._lo: np.ndarray = np.zeros(0)  # [d] left edge of bin 0
        self._width: np.ndarray = np.zeros(0)  # [d] bin width

    @property
    def count(self) -> int:
        """Samples seen so far."""
        return self._count + self._buffer_rows

    def update(self, batch: np.ndarray) -> None:
        """Adds the rows of ``batch`` (``[..., d]``; every leading axis counts as samples)."""
        batch = np.asarray(batch)
        if batch.ndim == 0:
            batch = batch.reshape(1, 1)
        x = batch.reshape(-1, batch.shape[-1])
        if self._d is None:
            self._d = x.shape[1]
            self._mean, self._m2 = np.zeros(self._d), np.zeros(self._d)
            self._min, self._max = np.full(self._d, np.inf), np.full(self._d, -np.inf)
        elif x.shape[1] != self._d:
            raise ValueError(
                f"batch has {x.shape[1]} features in its last axis but earlier batches had {self._d}; "
                "pass the same field (same last dimension) to one RunningStats"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("batch holds NaN or inf; norm stats need finite values (drop or fix those samples)")
        if x.shape[0]:
            self._buffer.append(x.copy())
            self._buffer_rows += x.shape[0]
        if self._buffer_rows >= self._flush_rows:
            self._process()

    def _process(self) -> None:
        """Folds the buffered rows into the moments (Chan's merge) and the quantile state."""
        if not self._buffer:
            return
        x = np.concatenate(self._buffer)
        self._buffer, self._buffer_rows = [], 0
        x64 = x.astype(np.float64)
        n = x.shape[0]
        b_mean = x64.mean(axis=0)
        b_m2 = ((x64 - b_mean) ** 2).sum(axis=0)
        total = self._count + n
        delta = b_mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + b_m2 + delta**2 * (self._count * n / total)
        self._count = total
        self._min = np.minimum(self._min, x64.min(axis=0))
        self._max = np.maximum(self._max, x64.max(axis=0))
        if self._hist is not None:
            self._bin(x64)
            return
        self._kept.append(x)
        self._kept_rows += n
        if self._kept_rows > self._exact_cap:
            self._start_histogram()

    def _start_histogram(self) -> None:
        assert self._d is not None
        # The kept samples' range, widened a little so the next blocks rarely force a merge.
        span = np.maximum(self._max - self._min, DEGENERATE_SCALE)
        self._lo = self._min - 0.05 * span
        self._width = 1.1 * span / self._bins
        self._hist = np.zeros((self._d, self._bins), np.int64)
        kept, self._kept, self._kept_rows = self._kept, [], 0
        self._bin(np.concatenate(kept).astype(np.float64))

    def _bin(self, x: np.ndarray) -> None:
        assert self._hist is not None
        self._grow(x.min(axis=0), x.max(axis=0))
        idx = np.floor((x - self._lo) / self._width).astype(np.int64)
        idx = np.clip(idx, 0, self._bins - 1)  # float rounding at the right edge only
        flat = idx + np.arange(x.shape[1]) * self._bins
        self._hist += np.bincount(flat.ravel(), minlength=self._hist.size).reshape(self._hist.shape)

    def _grow(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Merges bins 2:1 per dimension until ``[lo, hi]`` fits; counts are summed, never dropped."""
        assert self._hist is not None
        half = self._bins // 2
        for d in range(self._hist.shape[0]):
            while hi[d] >= self._lo[d] + self._width[d] * self._bins or lo[d] < self._lo[d]:
                merged = self._hist[d].reshape(half, 2).sum(axis=1)
                self._hist[d] = 0
                if lo[d] < self._lo[d]:  # grow to the left: the old span becomes the right half
                    self._hist[d, half:] = merged
                    self._lo[d] -= self._width[d] * self._bins
                else:  # grow to the right: the old span becomes the left half
                    self._hist[d, :half] = merged
                self._width[d] *= 2

    def get(self) -> NormStats:
        """The statistics so far (float64 arrays of shape ``[d]``)."""
        self._process()
        if self._count == 0:
            raise ValueError("RunningStats.get() before any update; feed at least one sample with update(batch)")
        std = np.sqrt(np.maximum(self._m2 / self._count, 0.0))
        if self._hist is None:
            kept = np.concatenate(self._kept)
            # One call per quantile with a Python float: numpy then keeps the data's dtype, so the
            # result equals what `np.quantile(x, 0.01, axis=0)` gives the caller bit for bit.
            q = np.stack([np.quantile(kept, p, axis=0).astype(np.float64) for p in QUANTILES])
        else:
            q = np.stack([self._hist_quantile(p) for p in QUANTILES])
        q = np.clip(q, self._min, self._max)
        return NormStats(mean=self._mean.copy(), std=std, q01=q[0], q99=q[1])

    def _hist_quantile(self, p: float) -> np.ndarray:
        """Value at rank ``p·(n-1)`` (numpy's linear method), spreading each bin's samples evenly over it."""
        assert self._hist is not None
        rank = p * (self._count - 1)
        cum = np.cumsum(self._hist, axis=1)
        j = np.argmax(cum > rank, axis=1)  # bin holding the sample of that rank
        rows = np.arange(self._hist.shape[0])
        before = np.where(j > 0, cum[rows, np.maximum(j - 1, 0)], 0)
        inside = (rank - before + 0.5) / self._hist[rows, j]
        return self._lo + self._width * (j + inside)


def save(stats: Mapping[str, NormStats], directory: str) -> str:
    """Writes ``directory/norm_stats.json`` in openpi's layout; returns the file path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILENAME)
    payload = {"norm_stats": {key: value.to_json() for key, value in stats.items()}}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def load(path: str) -> dict[str, NormStats]:
    """Reads ``norm_stats.json`` (a file, or a directory holding one), vibe's or openpi's."""
    if os.path.isdir(path):
        path = os.path.join(path, FILENAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Norm stats file not found at: {path}; run compute_norm_stats --dataset DATASET to write it"
        )
    with open(path) as f:
        data = json.load(f)
    if "norm_stats" not in data:
        raise ValueError(f"{path} has no top-level 'norm_stats' key; expected openpi's norm_stats.json layout")
    return {key: NormStats.from_json(value) for key, value in data["norm_stats"].items()}
