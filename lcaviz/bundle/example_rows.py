"""The writer's per-example accumulator (:mod:`lcaviz.bundle.examples` describes the datasets).

:class:`BundleWriter <lcaviz.bundle.writer.BundleWriter>` adds each iteration's ``E[t]``
(N_e, L) into the open row window and closes the window exactly when it closes the
per-parameter row, so ``lca_example`` rows cover the same ``lca_rows`` windows. Everything is
summed in float64 and rounded only when stored. Its state (open window, Σ of the closed rows,
the loss at the window's start, the last loss) is part of the vector a checkpoint carries
(``BundleWriter.running_total``), so a resume continues bit for bit.
"""

from __future__ import annotations

import h5py
import numpy as np

from lcaviz.bundle import examples as ex
from lcaviz.bundle.schema import to_bfloat16


class ExampleRows:
    """Per-example sums of one bundle being written.

    Args:
        f: the bundle (it has ``lca_example``).
        state: a vector from :meth:`state` (a resume), or None for a new run.
    """

    def __init__(self, f: h5py.File, state: np.ndarray | None = None):
        self.n, self.L = f[ex.ROWS].shape[1:]
        self.bfloat16 = f[ex.ROWS].dtype == np.uint16
        self.every = int(f[ex.CUM_ROWS].attrs["every"])
        shape = (self.n, self.L)
        self.window = np.zeros(shape, np.float64)  # Σ E over the open window
        self.rows_total = np.zeros(shape, np.float64)  # Σ of the closed rows
        self.loss_start = np.full(self.n, np.nan)  # ℓ_n at the θ that opened the window
        self.loss_last = np.full(self.n, np.nan)  # ℓ_n after the last iteration
        self._written_T = -1
        if state is not None:
            self.load(state)

    @property
    def state_size(self) -> int:
        return 2 * self.n * self.L + 2 * self.n

    def state(self) -> np.ndarray:
        """Everything a checkpoint must carry, one float64 vector."""
        return np.concatenate([self.window.ravel(), self.rows_total.ravel(), self.loss_start,
                               self.loss_last])

    def load(self, state: np.ndarray) -> None:
        v = np.asarray(state, np.float64).ravel()
        if v.size != self.state_size:
            raise ValueError(f"per-example state has {v.size} values, this bundle needs "
                             f"{self.state_size} ({self.n} examples x {self.L} layers)")
        k = self.n * self.L
        self.window = v[:k].reshape(self.n, self.L).copy()
        self.rows_total = v[k:2 * k].reshape(self.n, self.L).copy()
        self.loss_start = v[2 * k:2 * k + self.n].copy()
        self.loss_last = v[2 * k + self.n:].copy()

    def add(self, rec, opens_window: bool) -> None:
        """Add one iteration's record (``opens_window``: it is the first of a row window)."""
        e = rec.example
        if e is None:
            if rec.allocated:
                raise ValueError("this bundle stores lca_example: give IterationRecord.example "
                                 "at every allocated iteration")
            self.loss_last[:] = np.nan  # θ moved and nobody evaluated ℓ_n there
            return
        e = np.asarray(e, np.float64)
        if e.shape != (self.n, self.L):
            raise ValueError(f"IterationRecord.example has shape {e.shape}, the bundle tracks "
                             f"({self.n}, {self.L})")
        before = _losses(rec.example_loss_before, self.n, "example_loss_before")
        after = _losses(rec.example_loss_after, self.n, "example_loss_after")
        if opens_window:
            self.loss_start = before
        self.window += e
        self.loss_last = after

    def close(self, add, R: int) -> None:
        """Buffer the row of the window that just closed (``R`` rows after it) via ``add``."""
        row = self.window.astype(np.float32)
        add(ex.ROWS, to_bfloat16(row) if self.bfloat16 else row)
        add(ex.LOSS_ROWS, self.loss_start.astype(np.float32))
        self.rows_total += self.window
        self.window = np.zeros_like(self.window)
        self.loss_start = np.full(self.n, np.nan)
        if R % self.every == 0:
            add(ex.CUM_ROWS, self.rows_total.astype(np.float32))

    def write_totals(self, f: h5py.File, T: int) -> None:
        """Rewrite ``lca_example_cumsum``, ``loss_example_last`` and the T they cover (before
        the writer publishes ``progress``); nothing when they are already at ``T``."""
        if T == self._written_T:
            return
        f[ex.TOTAL][...] = self.rows_total + self.window
        f[ex.LOSS_LAST][...] = self.loss_last
        f[ex.TOTAL_ITERS][0] = T
        self._written_T = T


def split_state(f: h5py.File, state: np.ndarray | None, T: int
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``running_total`` as a checkpoint gave it: (Σ of lca rows or None, per-example state
    or None).

    Raises:
        ValueError: the vector does not fit this bundle (another run's checkpoint), or a
            bundle with examples resumed past iteration 0 without the per-example state.
    """
    P_rows = f["lca"].shape[1]
    has_examples = ex.ROWS in f
    size = P_rows
    if has_examples:
        n, L = f[ex.ROWS].shape[1:]
        size += 2 * n * L + 2 * n
    if state is None:
        if has_examples and T > 0:
            raise ValueError("this bundle has per-example LCA: resuming it needs the writer's "
                             "running_total from the checkpoint (it holds the open window)")
        return None, None
    v = np.array(state, np.float64).ravel()
    if v.size != size:
        what = f"{P_rows} row sums" + (f" and the per-example state ({size - P_rows} values)"
                                       if has_examples else "")
        raise ValueError(f"the checkpoint's running_total has {v.size} values, this bundle "
                         f"needs {size} ({what}): it belongs to another run")
    return v[:P_rows], (v[P_rows:] if has_examples else None)


def _losses(v, n: int, what: str) -> np.ndarray:
    if v is None:
        return np.full(n, np.nan)
    v = np.asarray(v, np.float64).ravel()
    if v.shape != (n,):
        raise ValueError(f"IterationRecord.{what} has {v.size} values, expected {n}")
    return v.copy()
