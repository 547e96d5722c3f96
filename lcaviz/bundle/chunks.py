"""Chunk shapes of the (rows, P) datasets and per-layer statistics of one LCA row (numpy only;
re-exported by :mod:`lcaviz.bundle.layout` and the writer)."""

from __future__ import annotations

import numpy as np

LCA_CHUNK = (8, 32768)  # 1 MiB float32 chunks: a row read touches P/32768 chunks


def lca_chunks(P: int, expected_rows: int) -> tuple[int, int]:
    """Chunk shape of (rows, P) datasets: at most LCA_CHUNK, split as evenly as possible so edge
    chunks waste little (a run with 2 stored rows would otherwise allocate 8-row chunks, 4x the
    bytes, and P = 84,060 would pad to 3 x 32,768 columns)."""
    expected = expected_rows if expected_rows > 0 else LCA_CHUNK[0]
    n_chunks = -(-expected // LCA_CHUNK[0])
    height = -(-expected // n_chunks)  # as even as possible: 20 rows -> 3 chunks of 7, not 8
    width = -(-P // -(-P // LCA_CHUNK[1])) if P > 0 else 1  # same for the columns
    return max(1, height), max(1, width)


def layer_stats(lca_row: np.ndarray, param_layer_index: np.ndarray, n_layers: int):
    """Per-layer sums and help/hurt counts of one (P,) LCA row (numpy; for synthetic data).

    Returns:
        (lca_layer (L,), help_count (L,), hurt_count (L,)).
    """
    sums = np.bincount(param_layer_index, weights=lca_row, minlength=n_layers)
    helped = np.bincount(param_layer_index, weights=lca_row < 0, minlength=n_layers)
    hurt = np.bincount(param_layer_index, weights=lca_row > 0, minlength=n_layers)
    return sums, helped.astype(np.int32), hurt.astype(np.int32)
