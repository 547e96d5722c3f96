"""Incremental, crash-tolerant HDF5 writer for LCA run bundles (numpy + h5py only).

The format is specified in docs/bundle-format.md. The writer creates every dataset up front,
switches to SWMR so readers can follow a live run, appends one iteration at a time, and
publishes progress only after the rows it counts are flushed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle.h5flags import clear_write_flags

FORMAT = "lca-bundle"
FORMAT_VERSION = 1
MAX_BUFFER_BYTES = 256 * 2**20  # flush early rather than buffer more than this
LCA_CHUNK = (8, 32768)  # 1 MiB float32 chunks: a row read touches P/32768 chunks
_STR = h5py.string_dtype()


@dataclass
class LayoutInfo:
    """Static description of a run, written once when the bundle is created."""

    param_names: list[str]
    param_shapes: list[tuple[int, ...]]
    param_offsets: np.ndarray  # (n + 1,) int64
    param_layer: np.ndarray  # (n,) int32
    param_module_type: list[str]
    layer_names: list[str]
    class_names: list[str]
    config: dict
    method: str
    lca_stride: int = 1
    iters_planned: int = 0
    per_class: bool = True
    val_lca: bool = False
    save_trajectory: bool = False
    device_name: str = "cpu"
    software: dict | None = None
    cumsum_every: int = 64


@dataclass
class IterationRecord:
    """Everything one iteration t (θ_t → θ_{t+1}) adds to the bundle."""

    loss_train: float  # L(θ_{t+1})
    acc_train: float
    loss_minibatch: float
    residual: float  # ΔL − ΣA
    splits: int
    lca_layer: np.ndarray  # (L,)
    help_count: np.ndarray  # (L,)
    hurt_count: np.ndarray  # (L,)
    seconds: float
    lca_row: np.ndarray | None = None  # (P,) when a stride window closes at this iteration
    lca_class_layer: np.ndarray | None = None  # (C, L)
    theta: np.ndarray | None = None  # (P,) θ_{t+1}
    loss_val: float | None = None
    acc_val: float | None = None
    lca_val_row: np.ndarray | None = None  # (P,)
    lca_val_layer: np.ndarray | None = None  # (L,)
    val_residual: float | None = None


def _make(group: h5py.Group, name: str, shape: tuple, dtype, description: str, **kw):
    """Create a dataset with anndata-style encoding attributes."""
    maxshape = kw.pop("maxshape", None)
    ds = group.create_dataset(name, shape=shape, dtype=dtype, maxshape=maxshape, **kw)
    ds.attrs["encoding-type"] = "string-array" if dtype is _STR else "array"
    ds.attrs["encoding-version"] = "1"
    ds.attrs["description"] = description
    return ds


def _growing(f: h5py.File, name: str, tail: tuple, dtype, description: str, chunk_rows=1024):
    """A dataset that grows along axis 0."""
    chunks = (chunk_rows, *tail) if tail else (chunk_rows,)
    return _make(f, name, (0, *tail), dtype, description, maxshape=(None, *tail), chunks=chunks)


class BundleWriter:
    """Append-only writer; use :meth:`create` for a new run and :meth:`reopen` to resume."""

    def __init__(self, f: h5py.File, flush_seconds: float = 2.0):
        self.f = f
        self.path = Path(f.filename)
        self.flush_seconds = flush_seconds
        self.stride = int(f.attrs["lca_stride"])
        self.every = int(f["lca_cumsum"].attrs["every"])
        self.T = int(f["progress"][0])
        self.R = int(f["progress"][1])
        self._running_total = self._recover_running_total()  # (P,) float64
        self._buffer: dict[str, list[np.ndarray]] = {}  # rows not yet written
        self._buffered_bytes = 0
        self._last_flush = time.monotonic()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, layout: LayoutInfo, *, theta0: np.ndarray,
               loss_train0: float, acc_train0: float, loss_val0: float | None = None,
               acc_val0: float | None = None, flush_seconds: float = 2.0) -> BundleWriter:
        """Create the bundle, write θ_0 quantities and switch to SWMR."""
        path = Path(path)
        f = h5py.File(path, "w", libver="latest")
        P = int(layout.param_offsets[-1])
        L, C = len(layout.layer_names), len(layout.class_names)
        a = f.attrs
        a["format"], a["format_version"] = FORMAT, FORMAT_VERSION
        a["config"] = json.dumps(layout.config, sort_keys=True, default=str)
        a["status"], a["status_reason"] = "running", ""
        a["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        a["software"] = json.dumps(layout.software or {}, sort_keys=True)
        a["device_name"], a["method"] = layout.device_name, layout.method
        a["lca_stride"], a["n_classes"] = int(layout.lca_stride), C
        a["iters_planned"] = int(layout.iters_planned)

        _make(f, "progress", (2,), np.int64, "[T iterations complete, R lca rows complete]")
        g = f.create_group("params")
        n = len(layout.param_names)
        shapes = np.full((n, 4), -1, np.int64)
        for k, s in enumerate(layout.param_shapes):
            shapes[k, : len(s)] = s
        _make(g, "names", (n,), _STR, "parameter tensor names", data=layout.param_names)
        _make(g, "shapes", (n, 4), np.int64, "tensor shapes, -1 padded", data=shapes)
        _make(g, "offsets", (n + 1,), np.int64, "flat offsets", data=layout.param_offsets)
        _make(g, "layer", (n,), np.int32, "layer index per tensor", data=layout.param_layer)
        _make(g, "module_type", (n,), _STR, "owning module class", data=layout.param_module_type)
        _make(g, "layer_names", (L,), _STR, "layer names", data=layout.layer_names)
        sizes = np.zeros(L, np.int64)
        np.add.at(sizes, layout.param_layer, np.diff(layout.param_offsets))
        _make(g, "layer_sizes", (L,), np.int64, "parameters per layer", data=sizes)
        _make(f.create_group("classes"), "names", (C,), _STR, "class labels",
              data=layout.class_names)

        rows_chunk = lca_chunks(P, layout.iters_planned, layout.lca_stride)
        _make(f, "lca", (0, P), np.float32, "per-parameter LCA, exact sums over stride windows",
              maxshape=(None, P), chunks=rows_chunk)
        f["lca"].attrs["lca_stride"] = int(layout.lca_stride)
        _make(f, "lca_cumsum", (0, P), np.float32, "sum of lca rows 0..(k+1)*every-1",
              maxshape=(None, P), chunks=rows_chunk)
        f["lca_cumsum"].attrs["every"] = int(layout.cumsum_every)
        _growing(f, "loss/train", (), np.float64, "full training-set loss at theta_t")
        _growing(f, "accuracy/train", (), np.float64, "full training-set accuracy at theta_t")
        _growing(f, "loss/minibatch", (), np.float64, "minibatch loss of each step")
        _growing(f, "lca_residual", (), np.float64, "delta L minus sum of LCA")
        _growing(f, "splits", (), np.int32, "Simpson intervals per iteration")
        _growing(f, "lca_layer", (L,), np.float64, "LCA summed per layer")
        _growing(f, "help_count", (L,), np.int32, "parameters with LCA < 0 per layer")
        _growing(f, "hurt_count", (L,), np.int32, "parameters with LCA > 0 per layer")
        _growing(f, "timing/seconds", (), np.float64, "wall seconds per iteration")
        if layout.per_class:
            _growing(f, "lca_class_layer", (C, L), np.float64, "LCA per class and layer", 256)
        _make(f, "param_help_iters", (P,), np.int32, "iterations each parameter helped")
        _make(f, "param_nonzero_iters", (P,), np.int32, "iterations with nonzero LCA")
        if layout.val_lca:
            _growing(f, "loss/val", (), np.float64, "full validation loss at theta_t")
            _growing(f, "accuracy/val", (), np.float64, "validation accuracy at theta_t")
            _make(f, "lca_val", (0, P), np.float32, "LCA of the validation loss",
                  maxshape=(None, P), chunks=rows_chunk)
            _growing(f, "lca_val_layer", (L,), np.float64, "validation LCA per layer")
            _growing(f, "lca_val_residual", (), np.float64, "validation conservation error")
        if layout.save_trajectory:
            _make(f, "trajectory", (0, P), np.float32, "theta_t", maxshape=(None, P),
                  chunks=lca_chunks(P, layout.iters_planned + 1, 1))

        _append(f["loss/train"], loss_train0)
        _append(f["accuracy/train"], acc_train0)
        if layout.val_lca:
            _append(f["loss/val"], loss_val0)
            _append(f["accuracy/val"], acc_val0)
        if layout.save_trajectory:
            if theta0 is None:
                raise ValueError("save_trajectory needs theta0")
            _append(f["trajectory"], np.asarray(theta0, np.float32))
        f["progress"][:] = [0, 0]
        f.swmr_mode = True
        f.flush()
        return cls(f, flush_seconds)

    @classmethod
    def reopen(cls, path: str | Path, T: int, flush_seconds: float = 2.0) -> BundleWriter:
        """Reopen a bundle to resume at iteration ``T``, dropping anything written after it.

        The caller must make sure no other process is still writing it: a writer killed with
        SIGKILL leaves the superblock's "open for writing" flags set, and we clear them.
        """
        clear_write_flags(path)
        f = h5py.File(path, "r+", libver="latest")
        stride = int(f.attrs["lca_stride"])
        done_T = int(f["progress"][0])
        if T > done_T:
            f.close()
            raise ValueError(f"checkpoint is at iteration {T} but the bundle has only {done_T}")
        R = T // stride
        every = int(f["lca_cumsum"].attrs["every"])
        for name in _T_DATASETS:
            if name in f:
                f[name].resize(T, axis=0)
        for name in ("loss/train", "accuracy/train", "loss/val", "accuracy/val", "trajectory"):
            if name in f:
                f[name].resize(T + 1, axis=0)
        for name in ("lca", "lca_val"):
            if name in f:
                f[name].resize(R, axis=0)
        f["lca_cumsum"].resize(R // every, axis=0)
        f["progress"][:] = [T, R]
        f.attrs["status"], f.attrs["status_reason"] = "running", ""
        f.swmr_mode = True
        f.flush()
        return cls(f, flush_seconds)

    # -- appending ------------------------------------------------------------------------
    def append(self, rec: IterationRecord) -> None:
        """Buffer iteration ``self.T``; it is written and published at the next flush."""
        add = self._add
        add("loss/train", rec.loss_train)
        add("accuracy/train", rec.acc_train)
        add("loss/minibatch", rec.loss_minibatch)
        add("lca_residual", rec.residual)
        add("splits", rec.splits)
        add("lca_layer", rec.lca_layer)
        add("help_count", rec.help_count)
        add("hurt_count", rec.hurt_count)
        add("timing/seconds", rec.seconds)
        if "lca_class_layer" in self.f:
            add("lca_class_layer", rec.lca_class_layer)
        if "trajectory" in self.f:
            add("trajectory", rec.theta.astype(np.float32))
        if "lca_val" in self.f:
            add("loss/val", rec.loss_val)
            add("accuracy/val", rec.acc_val)
            add("lca_val_layer", rec.lca_val_layer)
            add("lca_val_residual", rec.val_residual)
            if rec.lca_val_row is not None:
                self.append_lca_row(rec.lca_val_row, "lca_val")
        self.T += 1
        if rec.lca_row is not None:
            self.append_lca_row(rec.lca_row)
        due = time.monotonic() - self._last_flush >= self.flush_seconds
        if due or self._buffered_bytes > MAX_BUFFER_BYTES:
            self.flush()

    def append_lca_row(self, row: np.ndarray, name: str = "lca") -> None:
        """Buffer one stored row of ``lca`` (or ``lca_val``): an exact stride-window sum."""
        self._add(name, row.astype(np.float32))
        if name != "lca":
            return
        self._running_total += row
        self.R += 1
        if self.R % self.every == 0:
            self._add("lca_cumsum", self._running_total.astype(np.float32))

    def _add(self, name: str, value) -> None:
        value = np.asarray(value)
        self._buffer.setdefault(name, []).append(value)
        self._buffered_bytes += value.nbytes

    def set_param_counters(self, help_iters: np.ndarray, nonzero_iters: np.ndarray) -> None:
        """Overwrite the per-parameter counters (P,) with the engine's current totals."""
        self.f["param_help_iters"][:] = help_iters
        self.f["param_nonzero_iters"][:] = nonzero_iters

    def flush(self) -> None:
        """Write the buffered rows (one resize and one block write per dataset), flush, then
        publish progress, so readers never see rows that are not on disk."""
        for name, values in self._buffer.items():
            ds = self.f[name]
            n = ds.shape[0]
            ds.resize(n + len(values), axis=0)
            ds[n:] = np.stack(values)
        self._buffer.clear()
        self._buffered_bytes = 0
        self.f.flush()
        self.f["progress"][:] = [self.T, self.R]
        self.f.flush()
        self._last_flush = time.monotonic()

    def close(self, status: str = "complete", reason: str = "") -> None:
        """Flush, leave SWMR and record the final status."""
        if not self.f.id.valid:
            return
        try:
            self.flush()
        except BaseException as e:  # e.g. disk full: never leave the file open in this process
            self._buffer.clear()
            self.f.close()
            try:  # rows up to the last good flush stay published; say why the rest is missing
                self._set_status("failed", reason if status == "failed" else f"write error: {e}")
            except Exception:  # noqa: BLE001 - the disk may refuse this too; keep the cause
                pass
            raise
        self.f.close()
        self._set_status(status, reason)

    def _set_status(self, status: str, reason: str) -> None:
        with h5py.File(self.path, "r+", libver="latest") as f:
            f.attrs["status"], f.attrs["status_reason"] = status, reason

    def _recover_running_total(self) -> np.ndarray:
        """Σ of stored lca rows, rebuilt from the last cumsum row plus the rows after it."""
        P = self.f["lca"].shape[1]
        k = self.R // self.every
        total = np.zeros(P, np.float64)
        if k:
            total += self.f["lca_cumsum"][k - 1]
        for r in range(k * self.every, self.R):
            total += self.f["lca"][r]
        return total


_T_DATASETS = ("loss/minibatch", "lca_residual", "splits", "lca_layer", "help_count",
               "hurt_count", "timing/seconds", "lca_class_layer", "lca_val_layer",
               "lca_val_residual")


def lca_chunks(P: int, iters: int, stride: int) -> tuple[int, int]:
    """Chunk shape of (rows, P) datasets: at most LCA_CHUNK, split as evenly as possible so edge
    chunks waste little (a run with 2 stored rows would otherwise allocate 8-row chunks, 4x the
    bytes, and P = 84,060 would pad to 3 x 32,768 columns)."""
    expected = -(-iters // stride) if iters > 0 else LCA_CHUNK[0]
    n_chunks = -(-expected // LCA_CHUNK[0])
    height = -(-expected // n_chunks)  # as even as possible: 20 rows -> 3 chunks of 7, not 8
    width = -(-P // -(-P // LCA_CHUNK[1])) if P > 0 else 1  # same for the columns
    return max(1, height), max(1, width)


def _append(ds: h5py.Dataset, value) -> None:
    n = ds.shape[0]
    ds.resize(n + 1, axis=0)
    ds[n] = value


def layer_stats(lca_row: np.ndarray, param_layer_index: np.ndarray, n_layers: int):
    """Per-layer sums and help/hurt counts of one (P,) LCA row (numpy; for synthetic data).

    Returns:
        (lca_layer (L,), help_count (L,), hurt_count (L,)).
    """
    sums = np.bincount(param_layer_index, weights=lca_row, minlength=n_layers)
    helped = np.bincount(param_layer_index, weights=lca_row < 0, minlength=n_layers)
    hurt = np.bincount(param_layer_index, weights=lca_row > 0, minlength=n_layers)
    return sums, helped.astype(np.int32), hurt.astype(np.int32)
