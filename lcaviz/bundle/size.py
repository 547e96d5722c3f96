"""How large a bundle will be, before it is written: :func:`projected_bytes` from a
:class:`~lcaviz.bundle.layout.LayoutInfo`, and the one line ``lca-run`` and the tracker print at
start (issue 22.8). The README's table of bytes per parameter per iteration is measured with
``benchmarks/bench_bundle_size.py``; ``tests/lcaviz/test_bundle_size.py`` holds the projection
to within a few percent of real files."""

from __future__ import annotations

import numpy as np

from lcaviz.bundle.examples import CUMSUM_EVERY
from lcaviz.bundle.layout import LayoutInfo, counter_dtype

FIXED_BYTES = 32 << 10  # superblock, groups, attributes, object headers of ~40 datasets
SERIES_CHUNK = 1024  # rows per chunk of the per-iteration series (layout._growing)


def projected_bytes(layout: LayoutInfo, iters: int | None = None) -> dict[str, int]:
    """Uncompressed bytes of a complete bundle of ``iters`` iterations (default: planned).

    Returns:
        ``{"rows", "cumsum", "counters", "trajectory", "error", "examples", "series",
        "fixed", "total"}`` (gzip makes ``rows``, ``cumsum``, ``counters`` and ``examples``
        smaller, so ``total`` is then a bound).
    """
    T = int(iters if iters is not None else layout.iters_planned)
    cols = layout.columns()
    P = int(layout.param_offsets[-1])
    P_rows = int((cols[:, 1] - cols[:, 0]).sum())
    L, C = len(layout.layer_names), len(layout.class_names)
    G = len(layout.groups or ())
    K = max(int(layout.lca_every), 1)
    R = layout.schedule().n_rows(-(-T // K), True)
    bf16 = layout.lca_storage == "bfloat16"
    every = int(layout.cumsum_every or (16 if bf16 else 64))
    sources = 2 if layout.val_lca else 1
    out = {"rows": sources * R * P_rows * (2 if bf16 else 4),
           "cumsum": (R // every) * P_rows * 4,
           "counters": (6 if layout.oscillation_counters else 2) * P
           * counter_dtype(int(layout.iters_planned)).itemsize,  # typed for the planned run
           "trajectory": (T + 1) * P * 4 if layout.save_trajectory else 0,
           "error": (-(-T // layout.lca_error_every) * P_rows * 4
                     if layout.lca_error_every > 0 else 0),
           "examples": example_bytes(layout, R, every)}
    # the per-iteration series are chunked 1024 rows high (lca_class_layer 256): whole chunks
    n = T + 1
    per_iter = 5 * 8 + 4 + L * (8 + 4 + 4) + G * 8  # losses, splits, lca_layer, help/hurt
    if layout.val_lca:
        per_iter += 4 * 8 + L * 8 + G * 8
    if layout.max_halvings_flags:
        per_iter += 1
    out["series"] = (_whole_chunks(n, SERIES_CHUNK) * per_iter
                     + _whole_chunks(R, SERIES_CHUNK) * 16  # lca_rows
                     + (_whole_chunks(n, 256) * C * L * 8 if layout.per_class else 0))
    out["fixed"] = FIXED_BYTES + 200 * len(layout.param_names) + 64 * L
    out["total"] = int(sum(out.values()))
    return out


def example_bytes(layout: LayoutInfo, R: int, every: int) -> int:
    """Bytes of the per-example datasets (lcaviz.bundle.examples) for ``R`` rows: per row and
    tracked example (training, and validation with ``val_examples``) L values of
    ``lca_*example`` (2 B bfloat16, else 4 B), G_s more per split group (``example_groups``)
    and a float32 loss, every ``every`` rows a float32 running-total row, and the fixed
    totals, index and images (uncompressed: a bound, they are stored gzip)."""
    value = 2 if layout.lca_storage == "bfloat16" else 4
    L = len(layout.layer_names)
    G = 0 if layout.example_groups is None else int(np.asarray(layout.example_groups).size)
    every = min(every, CUMSUM_EVERY)
    total = 0
    for info in (layout.examples, layout.val_examples):
        if info is None:
            continue
        n, cols = int(np.asarray(info.index).size), L + (G if layout.examples else 0)
        fixed = n * (8 + 8 + cols * 8) + (n * 8 if info.label is not None else 0)
        if info.thumbnail is not None:
            fixed += int(np.asarray(info.thumbnail).size)
        total += R * n * (cols * value + 4) + (R // every) * n * cols * 4 + fixed
    return total


def _whole_chunks(n: int, chunk: int) -> int:
    """Rows allocated for ``n`` rows in chunks of ``chunk`` rows."""
    return -(-n // chunk) * chunk


def human(n: float) -> str:
    """``1.2 GB``, ``340 MB``, ``12 kB`` (powers of 1000, as ``ls -lh --si`` and disks)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} B"


def size_note(layout: LayoutInfo, rows_option: str = "lca_rows=",
              layers_option: str = "lca_layers=") -> str:
    """The line printed when a run starts: its projected size and what shrinks it.

    ``rows_option`` / ``layers_option`` name the settings in the caller's own spelling
    (``--lca-rows`` for ``lca-run``, ``lca_rows=`` for the tracker)."""
    planned = int(layout.iters_planned)
    T = planned if planned > 0 else 1000
    p = projected_bytes(layout, T)
    gzip = layout.compression == "gzip"
    span = f"for {T:,} iterations" if planned > 0 else "per 1,000 iterations"
    parts = [f"{name} {human(p[name])}" for name in ("rows", "counters", "trajectory", "error",
                                                     "examples")
             if p[name] >= 0.05 * p["total"] and p[name]]
    detail = f" ({', '.join(parts)})" if parts else ""
    note = f"bundle: {'≤' if gzip else '≈'} {human(p['total'])} {span}{detail}"
    if p["rows"] + p["cumsum"] >= 0.5 * p["total"] and p["total"] >= 10e6:
        note += (f"; use {rows_option}… (fewer, wider rows) or {layers_option}… (rows for "
                 "some layers only) to shrink it")
    return note


def bytes_per_param_iter(size: int, n_params: int, iters: int) -> float:
    """A file's bytes per parameter per iteration (the README's table)."""
    return float(size) / max(n_params, 1) / max(iters, 1) if size else float(np.nan)
