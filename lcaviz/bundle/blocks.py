"""Column-selection reads of a (rows, P) dataset, by bounding boxes rather than h5py point
selections; and the default size of one streamed block."""

from __future__ import annotations

import h5py
import numpy as np

BLOCK_BYTES = 64 * 2**20  # default size of one streamed block


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
