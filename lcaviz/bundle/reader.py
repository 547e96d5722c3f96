"""The lazy run-bundle reader :class:`RunBundle` (see :mod:`lcaviz.bundle`).

``RunBundle`` never reads the whole (R, P) matrix unless asked: rows, layer windows, parameter
curves and cumulative sums are read as slices, and :meth:`RunBundle.iter_row_blocks` streams
the matrix in blocks of bounded size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle.approx import _BundleApprox
from lcaviz.bundle.blocks import BLOCK_BYTES, _n_cols, _read_block
from lcaviz.bundle.counterfactual import _BundleCounterfactual
from lcaviz.bundle.derived import derive
from lcaviz.bundle.diagnostics import _BundleDiagnostics
from lcaviz.bundle.errors import BundleError, CorruptBundleError, read_guard
from lcaviz.bundle.examples_read import _BundleExamples
from lcaviz.bundle.groups import _BundleGroups
from lcaviz.bundle.h5open import _BundleFile
from lcaviz.bundle.meta import _BundleMeta
from lcaviz.bundle.schema import from_bfloat16


class RunBundle(_BundleFile, _BundleMeta, _BundleDiagnostics, _BundleApprox, _BundleGroups,
                _BundleCounterfactual, _BundleExamples):
    """One run bundle opened for reading (also a context manager).

    Shapes: T iterations, R per-parameter rows (row r sums the iterations
    ``row_windows[r]``), P parameters (P_rows = ``n_row_cols`` of them have rows; column
    selections are always given over the P parameters), L layers, C classes. All
    per-iteration series are cut to T from ``progress``.
    ``live`` is True while a writer has the file open (call :meth:`refresh` to follow it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        # one lock per handle: refresh() and close() wait for a read in another thread
        self._lock = threading.RLock()
        self._derived: dict[str, np.ndarray] = {}  # what derived.py worked out
        self._load()

    @classmethod
    def open(cls, path: str | Path) -> RunBundle:
        """Open and validate ``path``; raises a :class:`BundleError` subclass on failure."""
        return cls(path)

    def __enter__(self) -> RunBundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RunBundle({str(self.path)!r}, status={self.status!r}, T={self.n_iters}, "
                f"R={self.n_rows}, P={self.n_params}, L={self.n_layers})")

    def held(self) -> threading.RLock:
        """``with bundle.held(): ...`` keeps a live bundle as it is (no :meth:`refresh` from
        another thread) for a group of reads that must agree on ``n_rows`` and ``n_iters``."""
        return self._lock

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            self._ds.clear()
            self._derived.clear()
            if self._f is not None:
                try:
                    self._f.close()
                except Exception:  # closing a damaged file must not raise
                    pass
                self._f = None

    def refresh(self, attempts: int = 5) -> None:
        """Re-read a live bundle: progress, status and every dataset (reopens the file, since
        root attributes such as ``status`` only change when the writer re-opens it).

        Reads in other threads wait meanwhile. A live file caught between two states of its
        writer (switching modes to set ``status``, mid-flush) is read again, up to
        ``attempts`` times, before the error is believed.
        """
        with self._lock:
            for attempt in range(attempts):
                self.close()
                try:
                    self._load()
                    return
                except BundleError:
                    if not self.live or attempt == attempts - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))

    # -- lazy per-parameter slices ------------------------------------------------------------
    # ``source`` is "lca" (default), "lca_val" or "trajectory"; ``cols`` is None (all P
    # columns), an int, a slice, an index array or a boolean mask over the P columns.
    def _source_rows(self, source: str) -> int:
        if source in ("lca", "lca_val"):
            return self.n_rows
        if source == "trajectory":
            return self.n_iters + 1
        raise ValueError(f"unknown source {source!r}: use 'lca', 'lca_val' or 'trajectory'")

    def _read(self, source: str, r0: int, r1: int, cols) -> np.ndarray:
        """Rows ``r0:r1`` of ``source`` at parameter columns ``cols``, decoded to float32."""
        with self._lock:  # a refresh in another thread reopens the file meanwhile
            if self._f is None:
                raise BundleError(f"{self.path}: bundle is closed")
            if source not in self._f:
                raise KeyError(f"{self.path}: bundle has no {source!r} dataset")
            if source == "trajectory":
                return self._read_stored(source, r0, r1, cols, self.n_params)
            return self._read_stored(source, r0, r1, self.stored_columns(cols),
                                     self.n_row_cols)

    def _read_stored(self, source: str, r0: int, r1: int, scols, width: int) -> np.ndarray:
        """``source[r0:r1, scols]`` with ``scols`` already in the dataset's own columns."""
        with self._lock, read_guard(self.path, f"reading {source!r} rows {r0}:{r1}"):
            ds = self._dataset(source)
            out = _read_block(ds, r0, r1, scols, width)
        return from_bfloat16(out) if ds.dtype == np.uint16 else out

    def _row_range(self, r0: int | None, r1: int | None, source: str) -> tuple[int, int]:
        start, stop, _ = slice(r0, r1).indices(self._source_rows(source))
        return start, max(start, stop)

    def row(self, r: int, cols=None, source: str = "lca") -> np.ndarray:
        """Row ``r`` (negative counts from the end), (ncols,) float32."""
        R = self._source_rows(source)
        if not -R <= r < R:
            raise IndexError(f"row {r} out of range ({R} rows of {source!r})")
        r %= R
        return self._read(source, r, r + 1, cols)[0]

    def rows(self, r0: int | None = 0, r1: int | None = None, cols=None,
             source: str = "lca") -> np.ndarray:
        """Rows ``r0:r1`` (Python slice semantics, clipped to R), (r1 - r0, ncols) float32."""
        r0, r1 = self._row_range(r0, r1, source)
        return self._read(source, r0, r1, cols)

    def layer_window(self, layer: int | str, r0: int | None = 0, r1: int | None = None,
                     source: str = "lca") -> np.ndarray:
        """Rows ``r0:r1`` of one layer's columns, (r1 - r0, layer size) float32."""
        return self.rows(r0, r1, self.layer_columns(layer), source)

    def param_curve(self, index: int, source: str = "lca") -> np.ndarray:
        """One parameter's column over all rows, (R,) float32 (or (T + 1,) for trajectory);
        row r sums the iterations :meth:`iteration_of_row` ``(r)``."""
        if not 0 <= index < self.n_params:
            raise IndexError(f"parameter {index} out of range (P = {self.n_params})")
        return self._read(source, 0, self._source_rows(source), int(index))

    def cumulative(self, r: int, cols=None) -> np.ndarray:
        """Σ of ``lca`` rows 0..r inclusive, (ncols,) float64: one ``lca_cumsum`` row plus at
        most ``every - 1`` rows (the cumsum rows are float32, so the relative error is ~1e-7 of
        the running total)."""
        with self._lock:
            return self._cumulative(r, cols)

    def _cumulative(self, r: int, cols) -> np.ndarray:
        R = self.n_rows
        if not -1 <= r < R:
            raise IndexError(f"row {r} out of range (R = {R})")
        if self._f is None:
            raise BundleError(f"{self.path}: bundle is closed")
        if "lca_cumsum" not in self._f:  # a bundle without running totals: add the rows
            return self._read("lca", 0, r + 1, cols).sum(axis=0, dtype=np.float64)
        cum = self._dataset("lca_cumsum")
        every = int(cum.attrs.get("every", 1))
        k = min((r + 1) // every, cum.shape[0], R // every)
        scols = self.stored_columns(cols)
        total = np.zeros(_n_cols(scols, self.n_row_cols), np.float64)
        if k:
            total += self._read_stored("lca_cumsum", k - 1, k, scols, self.n_row_cols)[0]
        if r + 1 > k * every:
            total += self._read_stored("lca", k * every, r + 1, scols, self.n_row_cols).sum(
                axis=0, dtype=np.float64)
        return total

    def window_sum(self, r0: int, r1: int, cols=None) -> np.ndarray:
        """Σ of ``lca`` rows ``r0 .. r1 - 1``, (ncols,) float64 (short windows are summed
        directly; long ones as a difference of two :meth:`cumulative` reads)."""
        with self._lock:
            r0, r1 = self._row_range(r0, r1, "lca")
            every = (int(self._dataset("lca_cumsum").attrs.get("every", 1))
                     if "lca_cumsum" in (self._f or ()) else r1 - r0)
            if r1 - r0 <= 2 * every:
                return self._read("lca", r0, r1, cols).sum(axis=0, dtype=np.float64)
            return self.cumulative(r1 - 1, cols) - self.cumulative(r0 - 1, cols)

    def block_rows_for(self, n_cols: int, budget_bytes: int = BLOCK_BYTES) -> int:
        """Rows per streamed block so that one block of ``n_cols`` float32 fits the budget
        (a multiple of the 8-row chunk height when possible, so chunks are read once)."""
        rows = max(1, budget_bytes // max(1, 4 * n_cols))
        return rows - rows % 8 if rows >= 8 else rows

    def iter_row_blocks(self, block_rows: int | None = None, cols=None, *, r0: int = 0,
                        r1: int | None = None, source: str = "lca",
                        budget_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """Stream rows ``r0:r1`` as ``(first_row, block)`` pairs, block (rows, ncols) float32.

        Memory is one block: ``block_rows`` defaults to what fits ``budget_bytes`` (64 MiB).
        """
        r0, r1 = self._row_range(r0, r1, source)
        n = (_n_cols(cols, self.n_params) if source == "trajectory"
             else _n_cols(self.stored_columns(cols), self.n_row_cols))
        step = block_rows or self.block_rows_for(n, budget_bytes)
        for start in range(r0, r1, step):
            yield start, self._read(source, start, min(start + step, r1), cols)

    def trajectory_row(self, t: int, cols=None) -> np.ndarray:
        """θ_t, (ncols,) float32, for t in 0..T."""
        return self.row(t, cols, source="trajectory")

    def trajectory_param(self, index: int) -> np.ndarray:
        """One parameter's value θ_0 … θ_T, (T + 1,) float32."""
        return self.param_curve(index, source="trajectory")

    def _dataset(self, name: str) -> h5py.Dataset:
        with self._lock:
            if self._f is None:
                raise BundleError(f"{self.path}: bundle is closed")
            if name not in self._ds:
                with read_guard(self.path, f"opening dataset {name!r}"):
                    self._ds[name] = self._f[name]
            return self._ds[name]

    def _series(self, name: str, n: int, optional: bool = False) -> np.ndarray | None:
        with self._lock:
            if self._f is None:
                raise BundleError(f"{self.path}: bundle is closed")
            if name not in self._f:
                if optional:
                    return None
                value = derive(self, name, n)  # a bundle of another program's (derived.py)
                if value is None:
                    raise CorruptBundleError(f"{self.path}: required dataset {name!r} missing")
                return value
            ds = self._dataset(name)
            with read_guard(self.path, f"reading {name!r}"):
                return ds[:n]

    # -- per-iteration series (all cut to T) --------------------------------------------------
    def loss_train(self) -> np.ndarray:
        """Full training-set loss at θ_0 … θ_T, (T + 1,)."""
        return self._series("loss/train", self.n_iters + 1)

    def final_loss(self) -> float:
        """Training-set loss at θ_T (NaN for a run without iterations), reading one value."""
        if "loss/train" not in self._f:
            loss = self.loss_train()
            return float(loss[-1]) if len(loss) else float("nan")
        with self._lock, read_guard(self.path, "reading 'loss/train'"):
            ds, n = self._dataset("loss/train"), self.n_iters + 1
            return float(ds[n - 1]) if 0 < n <= ds.shape[0] else float("nan")

    def loss_val(self) -> np.ndarray | None:
        """Validation loss at θ_0 … θ_T, (T + 1,), or None without ``val_lca``."""
        return self._series("loss/val", self.n_iters + 1, optional=True)

    def loss_minibatch(self) -> np.ndarray:
        return self._series("loss/minibatch", self.n_iters)  # (T,)

    def accuracy_train(self) -> np.ndarray:
        return self._series("accuracy/train", self.n_iters + 1)  # (T + 1,)

    def accuracy_val(self) -> np.ndarray | None:
        return self._series("accuracy/val", self.n_iters + 1, optional=True)  # (T + 1,)

    def residual(self) -> np.ndarray:
        """Conservation error ΔL − ΣA per iteration, (T,)."""
        return self._series("lca_residual", self.n_iters)

    def splits(self) -> np.ndarray:
        return self._series("splits", self.n_iters)  # (T,)

    # Per-layer series, (T, ...). ``gaps``: their value at iterations that were not allocated
    # (--lca-every): 0 makes every sum over iterations the exact sum over the allocated ones,
    # as the rows are; NaN marks them for per-iteration views (see lcaviz/bundle/approx.py).
    def lca_layer(self, gaps: float = 0.0) -> np.ndarray:
        return self.gaps(self._series("lca_layer", self.n_iters), gaps)  # (T, L)

    def lca_class_layer(self, gaps: float = 0.0) -> np.ndarray | None:
        x = self._series("lca_class_layer", self.n_iters, optional=True)  # (T, C, L)
        return None if x is None else self.gaps(x, gaps)

    def lca_val_layer(self, gaps: float = 0.0) -> np.ndarray | None:
        x = self._series("lca_val_layer", self.n_iters, optional=True)  # (T, L)
        return None if x is None else self.gaps(x, gaps)

    def help_count(self) -> np.ndarray:
        return self._series("help_count", self.n_iters)  # (T, L)

    def hurt_count(self) -> np.ndarray:
        return self._series("hurt_count", self.n_iters)  # (T, L)

    def zero_count(self) -> np.ndarray:
        """Parameters with exactly zero LCA per iteration and layer, (T, L)."""
        return self.layer_sizes[None, :] - self.help_count() - self.hurt_count()

    def seconds(self) -> np.ndarray:
        return self._series("timing/seconds", self.n_iters)  # (T,)

    # (P,) int32 whatever the stored dtype (uint8 / uint16 for short runs since issue 22.8)
    def param_help_iters(self) -> np.ndarray:
        return self._series("param_help_iters", self.n_params).astype(np.int32, copy=False)

    def param_nonzero_iters(self) -> np.ndarray:
        return self._series("param_nonzero_iters", self.n_params).astype(np.int32, copy=False)

