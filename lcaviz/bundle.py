"""Read LCA run bundles (docs/bundle-format.md), lazily and safely, with h5py only.

``RunBundle`` never reads the whole (R, P) matrix unless asked: rows, layer windows, parameter
curves and cumulative sums are read as slices, and :meth:`RunBundle.iter_row_blocks` streams
the matrix in blocks of bounded size. Every failure to read a file is turned into a
:class:`BundleError` subclass whose message names the file and what is wrong.

Liveness: the file is opened with ``swmr=True`` only while its superblock says a writer has it
open (``RunBundle.live``); a closed file is opened normally. An HDF5 SWMR reader retries every
failed metadata read about 100 times with growing sleeps, so a truncated or damaged file
opened with SWMR would hang for minutes instead of failing at once. Always ``locking=False``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

FORMAT, FORMAT_VERSION = "lca-bundle", 1
CHUNK_CACHE_BYTES = 64 * 2**20  # per open dataset; bounded
BLOCK_BYTES = 64 * 2**20  # default size of one streamed block
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)
_REQUIRED = (
    "progress", "params/names", "params/shapes", "params/offsets", "params/layer",
    "params/module_type", "params/layer_names", "params/layer_sizes", "classes/names", "lca",
    "lca_cumsum", "loss/train", "loss/minibatch", "accuracy/train", "lca_residual", "splits",
    "lca_layer", "help_count", "hurt_count", "param_help_iters", "param_nonzero_iters",
    "timing/seconds",
)


class BundleError(Exception):
    """Base class of every error about a bundle file."""


class NotABundleError(BundleError):
    """Not an HDF5 file, or an HDF5 file that is not an ``lca-bundle``."""


class BundleNotFoundError(NotABundleError, FileNotFoundError):
    """The path does not exist."""


class UnsupportedVersionError(BundleError):
    """An ``lca-bundle`` of a ``format_version`` this reader does not know."""


class CorruptBundleError(BundleError):
    """Truncated or damaged file, missing datasets, or inconsistent shapes."""


def superblock_flags(path: Path) -> int | None:
    """File-consistency flags of an HDF5 file, or None if it is not HDF5.

    The signature may sit at 0, 512, 1024, ... (user block). Superblocks of version ≥ 2 (all
    files written with ``libver="latest"``) keep the flags at byte 11: bit 0 "open for
    writing", bit 2 "open for SWMR writing"; older superblocks report 0.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            offset = 0
            while offset + 12 <= size:
                fh.seek(offset)
                head = fh.read(12)
                if head[:8] == _HDF5_SIGNATURE:
                    return head[11] if head[8] >= 2 else 0
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return None
    return None


@contextmanager
def read_guard(path: Path, what: str) -> Iterator[None]:
    """Turn the exceptions h5py raises for damaged files into :class:`CorruptBundleError`."""
    try:
        yield
    except BundleError:
        raise
    except _H5_ERRORS as e:
        raise CorruptBundleError(f"{path}: damaged bundle while {what}: "
                                 f"{type(e).__name__}: {e}") from e


class RunBundle:
    """One run bundle opened for reading (also a context manager).

    Shapes: T iterations, R = ceil(T / S) rows (or T // S while running), P parameters,
    L layers, C classes. All per-iteration series are cut to T from ``progress``.
    ``live`` is True while a writer has the file open (call :meth:`refresh` to follow it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
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

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._ds.clear()
        if self._f is not None:
            try:
                self._f.close()
            except Exception:  # closing a damaged file must not raise
                pass
            self._f = None

    # -- opening and validation -----------------------------------------------------------------
    def _load(self) -> None:
        p = self.path
        if not p.exists():
            raise BundleNotFoundError(f"{p}: no such file")
        if not p.is_file():
            raise NotABundleError(f"{p}: not a file")
        self._f = self._open_h5(p)
        try:
            with read_guard(p, "reading the bundle header"):
                self._read_header()
        except BaseException:
            self.close()
            raise

    def _open_h5(self, p: Path, attempts: int = 3) -> h5py.File:
        """Open with SWMR only while a writer has the file open.

        A SWMR reader retries every failed metadata read (checksum, truncation) about 100
        times with growing sleeps, so a damaged file would hang it for minutes; a closed file
        opened normally fails at once with a clear error. A writer switching between SWMR and
        plain write mode (to set ``status``) is retried briefly.
        """
        for attempt in range(attempts):
            flags = superblock_flags(p)
            if flags is None:
                raise NotABundleError(f"{p}: not an HDF5 file (no HDF5 signature)")
            self.live = bool(flags & 0b101)
            try:
                return h5py.File(p, "r", swmr=self.live, locking=False,
                                 rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10007)
            except _H5_ERRORS as e:
                if not self.live or attempt == attempts - 1:
                    raise CorruptBundleError(f"{p}: HDF5 file cannot be opened ({e})") from e
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _read_header(self) -> None:
        f, p = self._f, self.path
        a = f.attrs
        if "format" not in a:
            raise NotABundleError(f"{p}: HDF5 file without a 'format' attribute: not an "
                                  "lca-bundle")
        if _text(a["format"]) != FORMAT:
            raise NotABundleError(f"{p}: format is {_text(a['format'])!r}, not {FORMAT!r}")
        version = int(a.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise UnsupportedVersionError(
                f"{p}: lca-bundle format_version {version} is not supported (this reader "
                f"reads version {FORMAT_VERSION}); upgrade lca-explorer")
        missing = [name for name in _REQUIRED if name not in f]
        if missing:
            raise CorruptBundleError(f"{p}: required datasets missing: {', '.join(missing)}")
        self._attrs = {k: _text(v) if isinstance(v, (bytes, str)) else v for k, v in a.items()}
        try:
            self.config: dict = json.loads(self._attrs.get("config", "{}"))
            self.software: dict = json.loads(self._attrs.get("software", "{}"))
        except (json.JSONDecodeError, TypeError) as e:
            raise CorruptBundleError(f"{p}: config/software attribute is not JSON ({e})") from e
        g = f["params"]
        self._names = [_text(s) for s in g["names"][()]]
        self._shapes = g["shapes"][()]  # (n, 4)
        self._offsets = g["offsets"][()].astype(np.int64)  # (n + 1,)
        self._tensor_layer = g["layer"][()].astype(np.int64)  # (n,)
        self._module_type = [_text(s) for s in g["module_type"][()]]
        self.layer_names: list[str] = [_text(s) for s in g["layer_names"][()]]
        self.layer_sizes: np.ndarray = g["layer_sizes"][()].astype(np.int64)  # (L,)
        self.class_names: list[str] = [_text(s) for s in f["classes/names"][()]]
        self.n_iters, self.n_rows = (int(v) for v in f["progress"][()])
        self._columns_cache: dict[int, slice | np.ndarray] = {}
        self._check_layout()

    def _check_layout(self) -> None:
        """Cross-check shapes; any inconsistency means a damaged or half-written file."""
        f, p = self._f, self.path
        n, L, T, R = len(self._names), len(self.layer_names), self.n_iters, self.n_rows
        problems = []
        if self._offsets.shape != (n + 1,) or self._offsets[0] != 0 or np.any(
                np.diff(self._offsets) < 0):
            problems.append(f"params/offsets {self._offsets.shape} is not n + 1 = {n + 1} "
                            "increasing offsets from 0")
        for name, length in (("params/shapes", n), ("params/layer", n),
                             ("params/module_type", n), ("params/layer_sizes", L)):
            if f[name].shape[0] != length:
                problems.append(f"{name} has {f[name].shape[0]} entries, expected {length}")
        if n and (self._tensor_layer.min() < 0 or self._tensor_layer.max() >= L):
            problems.append("params/layer refers to layers that do not exist")
        P = f["lca"].shape[1] if f["lca"].ndim == 2 else -1
        if len(self._offsets) and self._offsets[-1] != P:
            problems.append(f"params/offsets[-1] = {self._offsets[-1]} but lca has {P} columns")
        for name in ("lca_cumsum", "lca_val", "trajectory"):
            if name in f and (f[name].ndim != 2 or f[name].shape[1] != P):
                problems.append(f"{name} has shape {f[name].shape}, expected (*, P = {P})")
        if int(self._attrs.get("n_classes", len(self.class_names))) != len(self.class_names):
            problems.append("n_classes attribute disagrees with classes/names")
        S = int(self._attrs.get("lca_stride", 1))
        if S < 1 or T < 0 or not T // S <= R <= -(-T // S):
            problems.append(f"progress [T={T}, R={R}] is impossible for stride {S}")
        lengths = {"lca": R, "loss/train": T + 1, "accuracy/train": T + 1, "loss/minibatch": T,
                   "lca_residual": T, "splits": T, "lca_layer": T, "help_count": T,
                   "hurt_count": T, "timing/seconds": T, "lca_class_layer": T,
                   "loss/val": T + 1, "lca_val": R, "lca_val_layer": T, "trajectory": T + 1}
        for name, need in lengths.items():
            if name in f and f[name].shape[0] < need:
                problems.append(f"progress says {need} entries of {name} but it has "
                                f"{f[name].shape[0]}")
        for name, tail in (("lca_layer", (L,)), ("help_count", (L,)), ("hurt_count", (L,)),
                           ("lca_class_layer", (len(self.class_names), L))):
            if name in f and f[name].shape[1:] != tail:
                problems.append(f"{name} has shape {f[name].shape}, expected (T, *{tail})")
        for name in ("param_help_iters", "param_nonzero_iters"):
            if f[name].shape != (P,):
                problems.append(f"{name} has shape {f[name].shape}, expected ({P},)")
        if problems:
            raise CorruptBundleError(f"{p}: inconsistent bundle: " + "; ".join(problems))

    def refresh(self) -> None:
        """Re-read a live bundle: progress, status and every dataset (reopens the file, since
        root attributes such as ``status`` only change when the writer re-opens it)."""
        self.close()
        self._load()

    # -- metadata -----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return str(self._attrs.get("status", ""))

    @property
    def status_reason(self) -> str:
        return str(self._attrs.get("status_reason", ""))

    @property
    def created(self) -> str:
        return str(self._attrs.get("created", ""))

    @property
    def method(self) -> str:
        return str(self._attrs.get("method", ""))

    @property
    def device_name(self) -> str:
        return str(self._attrs.get("device_name", ""))

    @property
    def stride(self) -> int:
        return int(self._attrs.get("lca_stride", 1))

    @property
    def iters_planned(self) -> int:
        return int(self._attrs.get("iters_planned", 0))

    @property
    def n_params(self) -> int:
        return int(self._offsets[-1])

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_trajectory(self) -> bool:
        return "trajectory" in self._f

    @property
    def has_val(self) -> bool:
        return "lca_val" in self._f

    @property
    def has_class_layer(self) -> bool:
        return "lca_class_layer" in self._f

    @property
    def params(self) -> pd.DataFrame:
        """One row per parameter tensor: name, shape, offset, size, layer, layer_name,
        module_type."""
        shapes = [tuple(int(d) for d in s if d >= 0) for s in self._shapes]
        return pd.DataFrame({
            "name": self._names, "shape": shapes, "offset": self._offsets[:-1],
            "size": np.diff(self._offsets), "layer": self._tensor_layer,
            "layer_name": [self.layer_names[i] for i in self._tensor_layer],
            "module_type": self._module_type,
        })

    def layer_index(self, layer: int | str) -> int:
        """Index of a layer given by index (negative allowed) or name."""
        if isinstance(layer, (int, np.integer)):
            if not -self.n_layers <= layer < self.n_layers:
                raise IndexError(f"layer {layer} out of range (L = {self.n_layers})")
            return int(layer) % self.n_layers
        if layer not in self.layer_names:
            raise KeyError(f"no layer {layer!r}; layers are {self.layer_names}")
        return self.layer_names.index(layer)

    def layer_columns(self, layer: int | str) -> slice | np.ndarray:
        """Columns of a layer's parameters: a slice when contiguous (always, in practice),
        otherwise a sorted int64 index array."""
        li = self.layer_index(layer)
        if li not in self._columns_cache:
            ks = np.nonzero(self._tensor_layer == li)[0]
            starts, ends = self._offsets[ks], self._offsets[ks + 1]
            if len(ks) and np.all(starts[1:] == ends[:-1]):
                cols: slice | np.ndarray = slice(int(starts[0]), int(ends[-1]))
            else:
                pieces = [np.arange(s, e) for s, e in zip(starts, ends, strict=True)]
                cols = np.concatenate(pieces or [np.zeros(0, np.int64)])
            self._columns_cache[li] = cols
        return self._columns_cache[li]

    def tensor_columns(self, name: str) -> slice:
        """Columns of one parameter tensor, e.g. ``"fc1.weight"``."""
        if name not in self._names:
            raise KeyError(f"no parameter tensor {name!r}")
        k = self._names.index(name)
        return slice(int(self._offsets[k]), int(self._offsets[k + 1]))

    def column_layers(self) -> np.ndarray:
        """Layer index of every column, (P,) int64."""
        return np.repeat(self._tensor_layer, np.diff(self._offsets))

    def iteration_of_row(self, r: int) -> tuple[int, int]:
        """Iterations ``[start, end)`` summed in row ``r`` (the last window may be partial)."""
        S = self.stride
        return r * S, min((r + 1) * S, self.n_iters)

    def row_of_iteration(self, t: int) -> int:
        """The row whose window contains iteration ``t``."""
        return t // self.stride

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
        if source not in self._f:
            raise KeyError(f"{self.path}: bundle has no {source!r} dataset")
        ds = self._dataset(source)
        with read_guard(self.path, f"reading {source!r} rows {r0}:{r1}"):
            return _read_block(ds, r0, r1, cols, self.n_params)

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
        """One parameter's column over all rows, (R,) float32 (or (T + 1,) for trajectory)."""
        if not 0 <= index < self.n_params:
            raise IndexError(f"parameter {index} out of range (P = {self.n_params})")
        return self._read(source, 0, self._source_rows(source), int(index))

    def cumulative(self, r: int, cols=None) -> np.ndarray:
        """Σ of ``lca`` rows 0..r inclusive, (ncols,) float64: one ``lca_cumsum`` row plus at
        most ``every - 1`` rows (the cumsum rows are float32, so the relative error is ~1e-7 of
        the running total)."""
        R = self.n_rows
        if not -1 <= r < R:
            raise IndexError(f"row {r} out of range (R = {R})")
        cum = self._dataset("lca_cumsum")
        every = int(cum.attrs.get("every", 1))
        k = min((r + 1) // every, cum.shape[0], R // every)
        n = _n_cols(cols, self.n_params)
        total = np.zeros(n, np.float64)
        if k:
            with read_guard(self.path, "reading 'lca_cumsum'"):
                total += _read_block(cum, k - 1, k, cols, self.n_params)[0]
        if r + 1 > k * every:
            total += self._read("lca", k * every, r + 1, cols).sum(axis=0, dtype=np.float64)
        return total

    def window_sum(self, r0: int, r1: int, cols=None) -> np.ndarray:
        """Σ of ``lca`` rows ``r0 .. r1 - 1``, (ncols,) float64 (short windows are summed
        directly; long ones as a difference of two :meth:`cumulative` reads)."""
        r0, r1 = self._row_range(r0, r1, "lca")
        every = int(self._dataset("lca_cumsum").attrs.get("every", 1))
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
        n = _n_cols(cols, self.n_params)
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
        if self._f is None:
            raise BundleError(f"{self.path}: bundle is closed")
        if name not in self._ds:
            with read_guard(self.path, f"opening dataset {name!r}"):
                self._ds[name] = self._f[name]
        return self._ds[name]

    def _series(self, name: str, n: int, optional: bool = False) -> np.ndarray | None:
        if optional and name not in self._f:
            return None
        ds = self._dataset(name)
        with read_guard(self.path, f"reading {name!r}"):
            return ds[:n]

    # -- per-iteration series (all cut to T) --------------------------------------------------
    def loss_train(self) -> np.ndarray:
        """Full training-set loss at θ_0 … θ_T, (T + 1,)."""
        return self._series("loss/train", self.n_iters + 1)

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

    def lca_layer(self) -> np.ndarray:
        return self._series("lca_layer", self.n_iters)  # (T, L)

    def lca_class_layer(self) -> np.ndarray | None:
        return self._series("lca_class_layer", self.n_iters, optional=True)  # (T, C, L)

    def lca_val_layer(self) -> np.ndarray | None:
        return self._series("lca_val_layer", self.n_iters, optional=True)  # (T, L)

    def help_count(self) -> np.ndarray:
        return self._series("help_count", self.n_iters)  # (T, L)

    def hurt_count(self) -> np.ndarray:
        return self._series("hurt_count", self.n_iters)  # (T, L)

    def zero_count(self) -> np.ndarray:
        """Parameters with exactly zero LCA per iteration and layer, (T, L)."""
        return self.layer_sizes[None, :] - self.help_count() - self.hurt_count()

    def seconds(self) -> np.ndarray:
        return self._series("timing/seconds", self.n_iters)  # (T,)

    def param_help_iters(self) -> np.ndarray:
        return self._series("param_help_iters", self.n_params)  # (P,)

    def param_nonzero_iters(self) -> np.ndarray:
        return self._series("param_nonzero_iters", self.n_params)  # (P,)


def _n_cols(cols, P: int) -> int:
    if cols is None:
        return P
    if isinstance(cols, slice):
        return len(range(*cols.indices(P)))
    if isinstance(cols, (int, np.integer)):
        return 1
    cols = np.asarray(cols)
    return int(cols.sum()) if cols.dtype == bool else cols.size


def _read_block(ds: h5py.Dataset, r0: int, r1: int, cols, P: int) -> np.ndarray:
    """``ds[r0:r1, cols]`` for any column selection, reading bounding boxes rather than
    h5py point selections (slow, and they demand increasing indices)."""
    if cols is None:
        return ds[r0:r1]
    if isinstance(cols, (int, np.integer)):
        return ds[r0:r1, int(cols)]
    if isinstance(cols, slice):
        a, b, step = cols.indices(P)
        if step == 1:
            return ds[r0:r1, a:max(a, b)]
        lo, hi = (a, b) if step > 0 else (b + 1, a + 1)
        if hi <= lo:
            return np.zeros((r1 - r0, 0), ds.dtype)
        return ds[r0:r1, lo:hi][:, a - lo::step] if step > 0 else ds[r0:r1, lo:hi][:, ::step]
    idx = np.asarray(cols)
    idx = np.nonzero(idx)[0] if idx.dtype == bool else idx.astype(np.int64).ravel()
    out = np.empty((r1 - r0, idx.size), ds.dtype)
    if idx.size == 0:
        return out
    if idx.min() < 0 or idx.max() >= P:
        raise IndexError(f"column index out of range (P = {P})")
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    # split into groups wherever the gap is wider than a chunk; read each group's span
    breaks = np.nonzero(np.diff(s) > 32768)[0] + 1
    for g in np.split(np.arange(s.size), breaks):
        lo, hi = int(s[g[0]]), int(s[g[-1]]) + 1
        out[:, order[g]] = ds[r0:r1, lo:hi][:, s[g] - lo]
    return out


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


@dataclass
class RunInfo:
    """One row of the runs table (``ok`` is False for an unreadable file)."""

    path: str  # relative to the scanned directory, POSIX separators
    ok: bool
    error: str = ""
    net: str = ""
    dataset: str = ""
    optimizer: str = ""
    method: str = ""
    iterations: int = 0
    iters_planned: int = 0
    final_loss: float = math.nan
    status: str = ""
    created: str = ""
    n_params: int = 0
    mtime: float = 0.0
    size: int = 0


def scan_runs(runs_dir: str | Path, pattern: str = "*.h5") -> list[RunInfo]:
    """Describe every bundle under ``runs_dir`` (recursively), newest first.

    Never raises for a bad file: it gets ``ok=False`` and the error message. Each file is open
    only while its row is read.
    """
    root = Path(runs_dir)
    infos = []
    for p in sorted(root.rglob(pattern)) if root.is_dir() else []:
        try:
            st = p.stat()
        except OSError:
            continue
        info = RunInfo(path=p.relative_to(root).as_posix(), ok=False, mtime=st.st_mtime,
                       size=st.st_size)
        try:
            with RunBundle.open(p) as b:
                cfg = b.config
                loss = b._series("loss/train", b.n_iters + 1)
                info.net, info.dataset = str(cfg.get("net", "")), str(cfg.get("dataset", ""))
                info.optimizer, info.method = str(cfg.get("optimizer", "")), b.method
                info.iterations, info.iters_planned = b.n_iters, b.iters_planned
                info.final_loss = float(loss[-1]) if len(loss) else math.nan
                info.status, info.created, info.n_params = b.status, b.created, b.n_params
                info.ok = True
        except BundleError as e:
            info.error = str(e)
        except Exception as e:  # noqa: BLE001 - the runs page must survive anything
            info.error = f"{p}: unexpected {type(e).__name__}: {e}"
        infos.append(info)
    infos.sort(key=lambda i: i.mtime, reverse=True)
    return infos


__all__ = [
    "BLOCK_BYTES", "BundleError", "BundleNotFoundError", "CorruptBundleError",
    "NotABundleError", "RunBundle", "RunInfo", "UnsupportedVersionError", "scan_runs",
]
