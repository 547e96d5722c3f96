"""Chunk shapes of the (rows, P) datasets, the bytes an append adds, and per-layer statistics
of one LCA row (numpy only; re-exported by :mod:`lcaviz.bundle.layout` and the writer)."""

from __future__ import annotations

import numpy as np

LCA_CHUNK = (1, 32768)  # one row per chunk, 128 KiB float32: a row read touches P/32768 chunks


def lca_chunks(P: int, expected_rows: int = 0) -> tuple[int, int]:
    """Chunk shape of (rows, P) datasets: one row high, at most LCA_CHUNK[1] wide, the width
    split as evenly as possible so edge chunks waste little (P = 84,060 would otherwise pad to
    3 x 32,768 columns).

    One row per chunk (issue 22.8): HDF5 allocates a chunk whole, so 8-row chunks made a run of
    3 rows of a 10 M-parameter model cost 8 rows (320 MB), and a bundle's size grew in steps of
    8 rows; a one-row chunk costs exactly the rows written. A row read touches fewer bytes, and
    reading a column range over all rows reads the same bytes as before (in 8x the chunks).
    ``expected_rows`` is accepted for older callers and ignored.
    """
    del expected_rows
    width = -(-P // -(-P // LCA_CHUNK[1])) if P > 0 else 1
    return 1, max(1, width)


def append_bytes(ds, k: int) -> int:
    """At most how many bytes appending ``k`` rows to the growing dataset ``ds`` adds to the
    file: every chunk the rows touch, whole (HDF5 allocates chunks whole; a compressed one is
    rewritten)."""
    n = ds.shape[0]
    row = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
    if ds.chunks is None:
        return k * row
    height = ds.chunks[0]
    chunk = int(np.prod(ds.chunks, dtype=np.int64)) * ds.dtype.itemsize
    per_band = -(-row * height // chunk) if row else 0  # chunks across one band
    # an uncompressed chunk already holding rows is written in place; a compressed one is
    # written anew
    first = n // height + (1 if n % height and ds.compression is None else 0)
    return max(0, (n + k - 1) // height - first + 1) * per_band * chunk


def layer_stats(lca_row: np.ndarray, param_layer_index: np.ndarray, n_layers: int):
    """Per-layer sums and help/hurt counts of one (P,) LCA row (numpy; for synthetic data).

    Returns:
        (lca_layer (L,), help_count (L,), hurt_count (L,)).
    """
    sums = np.bincount(param_layer_index, weights=lca_row, minlength=n_layers)
    helped = np.bincount(param_layer_index, weights=lca_row < 0, minlength=n_layers)
    hurt = np.bincount(param_layer_index, weights=lca_row > 0, minlength=n_layers)
    return sums, helped.astype(np.int32), hurt.astype(np.int32)
