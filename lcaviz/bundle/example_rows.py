"""The writer's per-example accumulators (:mod:`lcaviz.bundle.examples` describes the datasets).

:class:`BundleWriter <lcaviz.bundle.writer.BundleWriter>` adds each iteration's values of every
set the bundle stores (:data:`~lcaviz.bundle.example_sets.SETS`: the training examples per
layer ``E[t]`` (N_e, L) and per split group (N_e, G_s), the validation examples likewise) into
the open row window and closes the window exactly when it closes the per-parameter row, so
every ``lca*_example*`` row covers the same ``lca_rows`` window. Everything is summed in
float64 and rounded only when stored. Their state (open window, Σ of the closed rows, the loss
at the window's start, the last loss) is part of the vector a checkpoint carries
(``BundleWriter.running_total``), set after set in :data:`SETS` order, so a resume continues
bit for bit; a bundle with training examples per layer only has the state of format 3.
"""

from __future__ import annotations

import h5py
import numpy as np

from lcaviz.bundle.example_sets import SETS, ExampleSet
from lcaviz.bundle.schema import to_bfloat16


class ExampleRows:
    """Per-example sums of one set of one bundle being written.

    Args:
        f: the bundle (it has ``es.rows``).
        es: the set.
        state: a vector from :meth:`state` (a resume), or None for a new run.
    """

    def __init__(self, f: h5py.File, es: ExampleSet, state: np.ndarray | None = None):
        self.es = es
        self.n, self.L = f[es.rows].shape[1:]
        self.bfloat16 = f[es.rows].dtype == np.uint16
        self.every = int(f[es.cum_rows].attrs["every"])
        shape = (self.n, self.L)
        self.window = np.zeros(shape, np.float64)  # Σ E over the open window
        self.rows_total = np.zeros(shape, np.float64)  # Σ of the closed rows
        self.loss_start = np.full(self.n, np.nan)  # ℓ_n at the θ that opened the window
        self.loss_last = np.full(self.n, np.nan)  # ℓ_n after the last iteration
        self._written_T = -1
        if state is not None:
            self.load(state)

    @staticmethod
    def size_of(f: h5py.File, es: ExampleSet) -> int:
        """Values of the state of set ``es`` in bundle ``f``."""
        n, tail = f[es.rows].shape[1:]
        return 2 * n * tail + (2 * n if es.has_loss else 0)

    def state(self) -> np.ndarray:
        """Everything a checkpoint must carry, one float64 vector."""
        losses = [self.loss_start, self.loss_last] if self.es.has_loss else []
        return np.concatenate([self.window.ravel(), self.rows_total.ravel(), *losses])

    def load(self, state: np.ndarray) -> None:
        v = np.asarray(state, np.float64).ravel()
        k = self.n * self.L
        if v.size != 2 * k + (2 * self.n if self.es.has_loss else 0):
            raise ValueError(f"{self.es.rows} state has {v.size} values, this bundle needs "
                             f"more or fewer ({self.n} examples x {self.L} columns)")
        self.window = v[:k].reshape(self.n, self.L).copy()
        self.rows_total = v[k:2 * k].reshape(self.n, self.L).copy()
        if self.es.has_loss:
            self.loss_start = v[2 * k:2 * k + self.n].copy()
            self.loss_last = v[2 * k + self.n:].copy()

    def prepare(self, rec) -> tuple | None:
        """The record's values of this set, checked (nothing kept yet); None: not given."""
        es = self.es
        e = getattr(rec, es.field, None)
        if e is None:
            if rec.allocated:
                raise ValueError(f"this bundle stores {es.rows}: give IterationRecord."
                                 f"{es.field} at every allocated iteration")
            return None
        e = np.asarray(e, np.float64)
        if e.shape != (self.n, self.L):
            raise ValueError(f"IterationRecord.{es.field} has shape {e.shape}, the bundle "
                             f"tracks ({self.n}, {self.L})")
        if not es.has_loss:
            return e, None, None
        before = _losses(getattr(rec, f"{es.loss_field}_before"), self.n,
                         f"{es.loss_field}_before")
        after = _losses(getattr(rec, f"{es.loss_field}_after"), self.n,
                        f"{es.loss_field}_after")
        return e, before, after

    def keep(self, values: tuple | None, opens_window: bool) -> None:
        """Add :meth:`prepare`'s answer (``opens_window``: the first of a row window)."""
        if values is None:
            self.loss_last[:] = np.nan  # θ moved and nobody evaluated ℓ_n there
            return
        e, before, after = values
        if opens_window and before is not None:
            self.loss_start = before
        self.window += e
        if after is not None:
            self.loss_last = after

    def close(self, add, R: int) -> None:
        """Buffer the row of the window that just closed (``R`` rows after it) via ``add``."""
        row = self.window.astype(np.float32)
        add(self.es.rows, to_bfloat16(row) if self.bfloat16 else row)
        if self.es.has_loss:
            add(self.es.loss_rows, self.loss_start.astype(np.float32))
        self.rows_total += self.window
        self.window = np.zeros_like(self.window)
        self.loss_start = np.full(self.n, np.nan)
        if R % self.every == 0:
            add(self.es.cum_rows, self.rows_total.astype(np.float32))

    def write_totals(self, f: h5py.File, T: int) -> None:
        """Rewrite the set's float64 total (a per-layer set: also its last losses and the T
        they cover) before the writer publishes ``progress``; nothing when already at ``T``."""
        if T == self._written_T:
            return
        f[self.es.total][...] = self.rows_total + self.window
        if self.es.has_loss:
            f[self.es.loss_last][...] = self.loss_last
            f[self.es.iters][0] = T
        self._written_T = T


class ExampleSums:
    """The :class:`ExampleRows` of every set bundle ``f`` stores, as one accumulator.

    Args:
        f: the bundle.
        state: the per-example part of a checkpoint's vector (:func:`split_state`), or None.
    """

    def __init__(self, f: h5py.File, state: np.ndarray | None = None):
        self.present = {es for es in SETS if es.rows in f}
        self.sets: list[ExampleRows] = []
        at = 0
        for es in SETS:
            if es in self.present:
                size = ExampleRows.size_of(f, es)
                part = None if state is None else np.asarray(state)[at:at + size]
                self.sets.append(ExampleRows(f, es, part))
                at += size

    def __bool__(self) -> bool:
        return bool(self.sets)

    def state(self) -> np.ndarray:
        return np.concatenate([s.state() for s in self.sets] or [np.zeros(0)])

    def add(self, rec, opens_window: bool) -> None:
        """Check the record against every set, then add it (a refused record keeps nothing)."""
        for es in SETS:
            if es not in self.present and getattr(rec, es.field, None) is not None:
                raise ValueError(f"this bundle was created without examples for "
                                 f"IterationRecord.{es.field} (no {es.rows}; see LayoutInfo."
                                 "examples, val_examples, example_groups)")
        values = [s.prepare(rec) for s in self.sets]
        for s, v in zip(self.sets, values, strict=True):
            s.keep(v, opens_window)

    def close(self, add, R: int) -> None:
        for s in self.sets:
            s.close(add, R)

    def write_totals(self, f: h5py.File, T: int) -> None:
        for s in self.sets:
            s.write_totals(f, T)


def split_state(f: h5py.File, state: np.ndarray | None, T: int
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``running_total`` as a checkpoint gave it: (Σ of lca rows or None, per-example state
    or None).

    Raises:
        ValueError: the vector does not fit this bundle (another run's checkpoint), or a
            bundle with examples resumed past iteration 0 without the per-example state.
    """
    P_rows = f["lca"].shape[1]
    present = [es for es in SETS if es.rows in f]
    size = P_rows + sum(ExampleRows.size_of(f, es) for es in present)
    if state is None:
        if present and T > 0:
            raise ValueError("this bundle has per-example LCA: resuming it needs the writer's "
                             "running_total from the checkpoint (it holds the open window)")
        return None, None
    v = np.array(state, np.float64).ravel()
    if v.size != size:
        what = f"{P_rows} row sums" + (f" and the per-example state ({size - P_rows} values: "
                                       f"{', '.join(es.rows for es in present)})"
                                       if present else "")
        raise ValueError(f"the checkpoint's running_total has {v.size} values, this bundle "
                         f"needs {size} ({what}): it belongs to another run")
    return v[:P_rows], (v[P_rows:] if present else None)


def _losses(v, n: int, what: str) -> np.ndarray:
    if v is None:
        return np.full(n, np.nan)
    v = np.asarray(v, np.float64).ravel()
    if v.shape != (n,):
        raise ValueError(f"IterationRecord.{what} has {v.size} values, expected {n}")
    return v.copy()
