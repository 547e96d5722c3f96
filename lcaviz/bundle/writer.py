"""Incremental, crash-tolerant HDF5 writer for LCA run bundles (numpy + h5py only).

The format is specified in docs/bundle-format.md and :mod:`lcaviz.bundle.schema`. The writer
creates every dataset up front (:func:`lcaviz.bundle.layout.create_datasets`), switches to
SWMR so readers can follow a live run, appends one iteration at a time, and publishes progress
only after the rows it counts are flushed. Producers (``compute.run.train``, ``LCATracker``, a
JAX or TensorFlow loop) decide when a row's window closes; the writer records each row's
``[first, end)`` iterations in ``lca_rows``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle import counterfactual
from lcaviz.bundle import examples as ex
from lcaviz.bundle.chunks import append_bytes
from lcaviz.bundle.example_rows import ExampleSums, split_state
from lcaviz.bundle.h5flags import clear_write_flags
from lcaviz.bundle.layout import (  # noqa: F401 - re-exported: the writer's public vocabulary
    ERROR_LAYER_FIELDS,
    ERROR_RULE_FIELDS,
    ERROR_STATS,
    FULL_LOSS_DATASETS,
    M_DATASETS,
    OSC_COUNTERS,
    T1_DATASETS,
    T_DATASETS,
    ErrorRecord,
    ExampleInfo,
    IterationRecord,
    LayoutInfo,
    create_datasets,
    layer_stats,
    lca_chunks,
)
from lcaviz.bundle.schema import ROW_SOURCES, from_bfloat16, to_bfloat16
from lcaviz.bundle.space import ensure_room

MAX_BUFFER_BYTES = 256 * 2**20  # flush early rather than buffer more than this
REPACK_WASTE = 0.05  # a complete gzip bundle is rewritten when more of it than this is unused


class BundleWriter:
    """Append-only writer; use :meth:`create` for a new run and :meth:`reopen` to resume."""

    def __init__(self, f: h5py.File, flush_seconds: float = 2.0,
                 running_total: np.ndarray | None = None):
        self.f = f
        self.path = Path(f.filename)
        self.flush_seconds = flush_seconds
        self.every = int(f["lca_cumsum"].attrs["every"])
        self.bfloat16 = f["lca"].dtype == np.uint16
        self.T = int(f["progress"][0])
        self.R = int(f["progress"][1])
        self.row_start = int(f["lca_rows"][self.R - 1, 1]) if self.R else 0
        # Σ of the exact (float64) rows so far, for lca_cumsum; a resume passes the one it
        # checkpointed so that the resumed bundle equals an uninterrupted one bit for bit
        lca_total, example_state = split_state(f, running_total, self.T)
        self._lca_total = (lca_total if lca_total is not None
                           else self._recover_running_total())  # (P_rows,)
        self._sums = ExampleSums(f, example_state)  # with no sets it refuses per-example values
        self.examples = self._sums if self._sums else None  # None: no per-example datasets
        self._buffer: dict[str, list[np.ndarray]] = {}  # rows not yet written
        self._buffered_bytes = 0
        self._last_flush = time.monotonic()
        # a gzip bundle written live is about twice its packed size: rewrite it when complete
        self.repack_at_close = f.attrs.get("lca_compression", "none") == "gzip"

    @property
    def running_total(self) -> np.ndarray:
        """The float64 state a checkpoint carries and gives back to :meth:`reopen`: Σ of the
        ``lca`` rows so far (P_rows,), followed, in a bundle with examples, by the
        per-example sums of every set it stores (:class:`ExampleSums
        <lcaviz.bundle.example_rows.ExampleSums>`). Treat it as opaque."""
        if self.examples is None:
            return self._lca_total
        return np.concatenate([self._lca_total, self.examples.state()])

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, layout: LayoutInfo, *, theta0: np.ndarray | None,
               loss_train0: float, acc_train0: float, loss_val0: float | None = None,
               acc_val0: float | None = None, flush_seconds: float = 2.0,
               full_loss0: tuple[float, float] | None = None) -> BundleWriter:
        """Create the bundle, write θ_0 quantities and switch to SWMR.

        ``full_loss0`` is ``(loss, accuracy)`` of the full training set at θ_0 for bundles
        with ``full_loss_every`` (its first ``full_loss`` entry).

        The caller is responsible for not replacing a bundle that must be kept (``lca-run``
        refuses an existing ``--out`` unless ``--overwrite``).
        """
        if layout.save_trajectory and theta0 is None:
            raise ValueError("save_trajectory needs theta0")
        path = Path(path)
        first = 4 * int(layout.param_offsets[-1]) if layout.save_trajectory else 0
        ensure_room(path, first + (1 << 20), "creating the bundle")
        f = h5py.File(path, "w", libver="latest")
        try:
            create_datasets(f, layout)
            _append(f["loss/train"], loss_train0)
            _append(f["accuracy/train"], acc_train0)
            if layout.val_lca:
                _append(f["loss/val"], loss_val0)
                _append(f["accuracy/val"], acc_val0)
            if layout.save_trajectory:
                _append(f["trajectory"], np.asarray(theta0, np.float32))
            if layout.full_loss_every > 0 and full_loss0 is not None:
                for name, v in zip(FULL_LOSS_DATASETS, (0, *full_loss0), strict=True):
                    _append(f[name], v)
            f["progress"][:] = [0, 0]
            f.attrs["writer_pid"] = os.getpid()  # lets a resume refuse a live writer
            f.swmr_mode = True
            f.flush()
        except BaseException:
            try:
                f.close()
            finally:  # a bundle that never got its first iteration holds nothing to keep
                path.unlink(missing_ok=True)
            raise
        return cls(f, flush_seconds)

    @classmethod
    def reopen(cls, path: str | Path, T: int, flush_seconds: float = 2.0,
               running_total: np.ndarray | None = None) -> BundleWriter:
        """Reopen a bundle to resume at iteration ``T``, dropping anything written after it.

        The caller must make sure no other process is still writing it: a writer killed with
        SIGKILL leaves the superblock's "open for writing" flags set, and we clear them.
        """
        ensure_room(Path(path), 0, "resuming the bundle")  # before touching it: 1 MiB spare
        clear_write_flags(path)
        f = h5py.File(path, "r+", libver="latest")
        done_T, done_R = (int(v) for v in f["progress"][()])
        if T > done_T:
            f.close()
            raise ValueError(f"checkpoint is at iteration {T} but the bundle has only {done_T}")
        try:  # before anything is cut: a checkpoint that does not fit loses nothing
            split_state(f, running_total, T)
        except ValueError:
            f.close()
            raise
        ends = f["lca_rows"][:done_R, 1]
        R = int(np.searchsorted(ends, T, side="right"))  # rows whose window ended by T
        for name in T_DATASETS:
            if name in f:
                f[name].resize(T, axis=0)
        if "lca_error_iters" in f:  # error iterations before T (all flushed before progress)
            M = int(np.searchsorted(f["lca_error_iters"][()], T, side="left"))
            for name in M_DATASETS:
                f[name].resize(M, axis=0)
        counterfactual.truncate(f, T)
        for name in T1_DATASETS:
            if name in f:
                f[name].resize(T + 1, axis=0)
        if "lca_iters" in f:  # allocated iterations before T
            f["lca_iters"].resize(int(np.searchsorted(f["lca_iters"][()], T)), axis=0)
        if "full_loss_iters" in f:  # evaluations at θ_0 … θ_T
            F = int(np.searchsorted(f["full_loss_iters"][()], T, side="right"))
            for name in FULL_LOSS_DATASETS:
                f[name].resize(F, axis=0)
        for name in (*ROW_SOURCES, "lca_rows"):
            if name in f:
                f[name].resize(R, axis=0)
        f["lca_cumsum"].resize(R // int(f["lca_cumsum"].attrs["every"]), axis=0)
        ex.truncate(f, R)
        f["progress"][:] = [T, R]
        f.attrs["status"], f.attrs["status_reason"] = "running", ""
        f.attrs["writer_pid"] = os.getpid()
        f.swmr_mode = True
        writer = cls(f, flush_seconds, running_total)
        if writer.examples is not None:  # the totals of the checkpoint, not of the last flush
            writer.examples.write_totals(f, T)
        f.flush()
        return writer

    # -- appending ------------------------------------------------------------------------
    def append(self, rec: IterationRecord) -> None:
        """Buffer iteration ``self.T``; it is written and published at the next flush."""
        # first: it checks the record before anything is kept
        self._sums.add(rec, opens_window=self.T == self.row_start)
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
        if "lca_group" in self.f:
            if rec.lca_group is None:
                raise ValueError("this bundle stores lca_group: give it every iteration")
            add("lca_group", rec.lca_group)
        if "trajectory" in self.f:
            add("trajectory", rec.theta.astype(np.float32))
        if "hit_max_halvings" in self.f:
            if rec.hit_max_halvings is None:
                raise ValueError("this bundle stores hit_max_halvings: give it every iteration")
            add("hit_max_halvings", np.int8(bool(rec.hit_max_halvings)))
        if rec.lca_error is not None:
            self._add_error(rec.lca_error)
        if rec.counterfactual is not None:
            if "counterfactual_iters" not in self.f:
                raise ValueError("this bundle was created without counterfactual datasets")
            self._add("counterfactual_iters", np.int64(self.T))
            self._add("counterfactual", np.asarray(rec.counterfactual, np.float64))
        if rec.allocated and "lca_iters" in self.f:
            add("lca_iters", np.int64(self.T))
        if rec.full_loss is not None and "full_loss_iters" in self.f:
            for name, v in zip(FULL_LOSS_DATASETS, rec.full_loss, strict=True):
                add(name, v)
        if "loss_change" in self.f:
            add("loss_change", np.nan if rec.loss_change is None else rec.loss_change)
        if "lca_val" in self.f:
            add("loss/val", rec.loss_val)
            add("accuracy/val", rec.acc_val)
            add("lca_val_layer", rec.lca_val_layer)
            add("lca_val_residual", rec.val_residual)
            if "lca_val_group" in self.f:
                add("lca_val_group", rec.lca_val_group)
            if rec.lca_val_row is not None:
                self.append_lca_row(rec.lca_val_row, "lca_val")
        self.T += 1
        if rec.lca_row is not None:
            self.append_lca_row(rec.lca_row)
        due = time.monotonic() - self._last_flush >= self.flush_seconds
        if due or self._buffered_bytes > MAX_BUFFER_BYTES:
            self.flush()

    def append_lca_row(self, row: np.ndarray, name: str = "lca") -> None:
        """Buffer one row of ``lca`` (or ``lca_val``): the exact sum over iterations
        ``[row_start, T)``, (P_rows,) in float64 or float32. An ``lca`` row closes the window;
        append the ``lca_val`` row of the same window first."""
        row = np.asarray(row)
        self._add(name, to_bfloat16(row.astype(np.float32)) if self.bfloat16
                  else row.astype(np.float32))
        if name != "lca":
            return
        if self.T <= self.row_start:
            raise ValueError(f"an lca row needs at least one iteration: its window would be "
                             f"[{self.row_start}, {self.T})")
        self._add("lca_rows", np.array([self.row_start, self.T], np.int64))
        self.row_start = self.T
        self._lca_total += row
        self.R += 1
        if self.R % self.every == 0:
            self._add("lca_cumsum", self._lca_total.astype(np.float32))
        if self.examples is not None:  # the same window, closed at the same moment
            self.examples.close(self._add, self.R)

    def _add_error(self, e: ErrorRecord) -> None:
        """Buffer one error iteration (``--lca-error-every``) for iteration ``self.T``."""
        if "lca_error_iters" not in self.f:
            raise ValueError("this bundle was created without lca_error datasets "
                             "(LayoutInfo.lca_error_every = 0)")
        if e.iteration != self.T:
            raise ValueError(f"error record of iteration {e.iteration} appended at {self.T}")
        self._add("lca_error_iters", np.int64(e.iteration))
        self._add("lca_error", np.asarray(e.error, np.float32))
        self._add(f"{ERROR_STATS}/intervals", np.int32(e.intervals))
        self._add(f"{ERROR_STATS}/ref_residual", np.float64(e.ref_residual))
        for name in (*ERROR_LAYER_FIELDS, *ERROR_RULE_FIELDS):
            self._add(f"{ERROR_STATS}/{name}", getattr(e, name))

    def _add(self, name: str, value) -> None:
        value = np.asarray(value)
        self._buffer.setdefault(name, []).append(value)
        self._buffered_bytes += value.nbytes

    def set_param_counters(self, help_iters: np.ndarray, nonzero_iters: np.ndarray) -> None:
        """Overwrite the per-parameter counters (P,) with the engine's current totals."""
        self._write_counters({"param_help_iters": help_iters,
                              "param_nonzero_iters": nonzero_iters})

    def set_oscillation_counters(self, counters: dict[str, np.ndarray],
                                 layer: np.ndarray) -> None:
        """Overwrite the oscillation counters: ``counters`` maps each of
        :data:`~lcaviz.bundle.layout.OSC_COUNTERS` to (P,), ``layer`` is their (L, 6) sums.
        A bundle created without them (``oscillation_counters=False``) is left as it is.
        ``oscillation_iters`` records the iterations they cover (``T`` appended so far)."""
        if "layer_oscillation" not in self.f:
            return
        self._write_counters({name: counters[name] for name in OSC_COUNTERS})
        self.f["layer_oscillation"][:] = layer
        self.f["oscillation_iters"][0] = self.T

    def _write_counters(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite (P,) counters, stored in the compact dtype the layout chose for them."""
        datasets = {name: self.f[name] for name in values}
        ensure_room(self.path, sum(ds.nbytes for ds in datasets.values()),
                    "writing the per-parameter counters")
        for name, ds in datasets.items():
            v = np.asarray(values[name])
            top = np.iinfo(ds.dtype).max
            if v.size and int(v.max()) > top:  # more iterations than the bundle was made for
                raise ValueError(f"{name} reached {int(v.max()):,}, beyond its {ds.dtype} "
                                 f"storage (at most {top:,}: the run was planned for "
                                 f"{int(self.f.attrs.get('iters_planned', 0)):,} iterations)")
            ds[:] = v

    def flush_bytes(self) -> int:
        """At most how many bytes the next :meth:`flush` adds to the file: every chunk its
        rows touch, whole (HDF5 allocates chunks whole; a compressed one is rewritten)."""
        total = sum(append_bytes(self.f[name], len(values))
                    for name, values in self._buffer.items())
        return total + 4096 * len(self._buffer)  # chunk index and object header updates

    def flush(self) -> None:
        """Write the buffered rows (one resize and one block write per dataset), flush, then
        publish progress, so readers never see rows that are not on disk.

        Raises:
            lcaviz.bundle.space.NoRoom: the rows would not fit on the disk (or under the
                file-size limit); nothing was written, the file still closes cleanly.
        """
        if self._buffer:
            ensure_room(self.path, self.flush_bytes(), "the next bundle flush")
        for name, values in self._buffer.items():
            ds = self.f[name]
            n = ds.shape[0]
            ds.resize(n + len(values), axis=0)
            ds[n:] = np.stack(values)
        self._buffer.clear()
        self._buffered_bytes = 0
        if self.examples is not None:
            self.examples.write_totals(self.f, self.T)
        self.f.flush()
        self.f["progress"][:] = [self.T, self.R]
        self.f.flush()
        self._last_flush = time.monotonic()

    def close(self, status: str = "complete", reason: str = "",
              attrs: dict | None = None) -> None:
        """Flush, leave SWMR and record the final status (and ``attrs``, root attributes
        such as the cumulative conservation error, which cannot change in SWMR mode)."""
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
        self._set_status(status, reason, attrs)
        if status == "complete" and self.repack_at_close:
            self._repack()

    def _repack(self) -> None:
        """Rewrite the finished compressed bundle packed if space is wasted
        (:func:`lcaviz.bundle.repack.repack_if_wasted`)."""
        from lcaviz.bundle.repack import repack_if_wasted

        repack_if_wasted(self.path, REPACK_WASTE)

    def _set_status(self, status: str, reason: str, attrs: dict | None = None) -> None:
        with h5py.File(self.path, "r+", libver="latest") as f:
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            f.attrs["status"], f.attrs["status_reason"] = status, reason

    def _recover_running_total(self) -> np.ndarray:
        """Σ of stored lca rows, rebuilt from the last cumsum row plus the rows after it
        (float32 rows: within ~1e-7 of the running total the run had; bfloat16 rows: 2⁻⁸)."""
        P_rows = self.f["lca"].shape[1]
        k = self.R // self.every
        total = np.zeros(P_rows, np.float64)
        if k:
            total += self.f["lca_cumsum"][k - 1]
        for r in range(k * self.every, self.R):
            row = self.f["lca"][r]
            total += from_bfloat16(row) if self.bfloat16 else row
        return total


def _append(ds: h5py.Dataset, value) -> None:
    n = ds.shape[0]
    ds.resize(n + 1, axis=0)
    ds[n] = value
