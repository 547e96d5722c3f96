"""Learning is synchronised across layers (paper Section 5, Fig. 6, the random-shift test).

Definitions, following the paper:

* For one class c and layer l, the series is that layer's per-class LCA, lca_class_layer[:, c, l]
  (or lca_layer[:, l] for the class-free view, Fig. S17).
* A *moment of learning* (peak) is a local minimum: a value strictly lower than both
  neighbours (so t = 0 and t = T − 1 never qualify). The *top-k peaks* are the k lowest (most
  negative) such minima (k = 20 in the paper; fewer if fewer minima exist).
* An *aligned moment* of class c is an iteration at which every layer has one of its top-k
  peaks (the red points of Fig. 6).
* Baseline: shift each layer's peak set, independently for every class and layer, by a random
  integer offset in {−s..s} (s = 2), dropping peaks shifted outside [0, T), and recount; repeat
  N = 1000 times. p = (1 + #{baseline ≥ actual}) / (N + 1), per class and for the total over
  classes (the test reported in ``p_value``). A per-class p-value cannot fall much below
  (2s + 1)^−(L−1) (1/25 for 3 layers): shifting every layer by the same offset keeps every
  alignment, so the pooled total is the test to read.

The paper's "9.4 vs 0.4" (MNIST–FC, 10 classes, 3 layers, top 20) reads as the mean number of
aligned moments per class (``actual_mean_per_class`` vs ``baseline_mean_per_class``): 9.4 of
20 peaks aligned per class; a 10-class total of 9.4 would be under one per class.

Runs made with ``--lca-every K`` have LCA only at the allocated iterations (NaN elsewhere in
the series :func:`synchrony` reads): peaks are then the local minima of the allocated series
(neighbours are the previous and next *allocated* iterations), reported as iterations, and the
shift test's offsets count allocated steps (±s steps = ±s·K iterations). Nothing is filled in
between. Rows with any NaN are treated as not allocated, also in arrays passed directly.

The resampling is vectorised: for every reference peak i (of layer 0) and layer l ≥ 1 we
precompute which relative offsets δ = d_0 − d_l would align i with some peak of l; a resample
is then a table look-up, (N, C, L − 1, k) booleans.
"""

from __future__ import annotations

import numpy as np

from lcaviz.bundle import RunBundle


def top_peaks(series: np.ndarray, k: int = 20) -> np.ndarray:
    """Iterations of the k lowest strict local minima of ``series`` (T,), sorted by iteration.

    NaN entries (iterations that were not allocated) are skipped: a value's neighbours are the
    nearest finite values on either side.
    """
    x = np.asarray(series, np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        its = np.flatnonzero(finite)
        return its[top_peaks(x[finite], k)]
    if x.size < 3:
        return np.zeros(0, np.int64)
    inner = np.nonzero((x[1:-1] < x[:-2]) & (x[1:-1] < x[2:]))[0] + 1
    lowest = inner[np.argsort(x[inner], kind="stable")[:k]]
    return np.sort(lowest).astype(np.int64)


def peak_table(x: np.ndarray, k: int = 20) -> np.ndarray:
    """Top-k peaks of every (class, layer) series of ``x`` (T, C, L): (C, L, k), −1 padded."""
    T, C, L = x.shape
    out = np.full((C, L, k), -1, np.int64)
    for c in range(C):
        for li in range(L):
            p = top_peaks(x[:, c, li], k)
            out[c, li, : p.size] = p
    return out


def _alignment_table(peaks: np.ndarray, width: int) -> np.ndarray:
    """has[c, l-1, i, δ + width] = layer l has a peak at (layer-0 peak i) + δ, (C, L-1, k, W)."""
    C, L, k = peaks.shape
    ref = peaks[:, :1, :, None]  # (C, 1, k, 1)
    other = peaks[:, 1:, None, :]  # (C, L-1, 1, k)
    delta = other - ref  # (C, L-1, k, k)
    ok = (ref >= 0) & (other >= 0) & (np.abs(delta) <= width)
    has = np.zeros((C, L - 1, k, 2 * width + 1), bool)
    c, li, i, _ = np.nonzero(ok)
    has[c, li, i, delta[ok] + width] = True
    return has


def _aligned_counts(peaks: np.ndarray, has: np.ndarray, offsets: np.ndarray, n_iters: int,
                    width: int) -> np.ndarray:
    """Aligned moments per resample and class for per-(class, layer) offsets (N, C, L)."""
    C, L, k = peaks.shape
    N = offsets.shape[0]
    shifted = peaks[None, :, 0, :] + offsets[:, :, :1]  # (N, C, k) layer-0 peaks after shift
    ok = (peaks[None, :, 0, :] >= 0) & (shifted >= 0) & (shifted < n_iters)  # (N, C, k)
    if L > 1:
        delta = offsets[:, :, :1] - offsets[:, :, 1:] + width  # (N, C, L-1), δ = d_0 − d_l
        ci = np.arange(C)[None, :, None]
        li = np.arange(L - 1)[None, None, :]
        hit = has[ci, li, :, delta]  # (N, C, L-1, k)
        ok &= hit.all(axis=2)
    return ok.sum(axis=-1) if N else np.zeros((0, C), np.int64)  # (N, C)


def shift_test(peaks: np.ndarray, n_iters: int, *, max_shift: int = 2,
               n_resamples: int = 1000, seed: int = 0, chunk: int = 250) -> dict:
    """The random-shift significance test on a peak table (C, L, k) from :func:`peak_table`.

    Returns:
        ``actual`` (C,), ``baseline`` (N, C) aligned counts, and the summary numbers described
        in the module docstring.
    """
    C, L, k = peaks.shape
    has = _alignment_table(peaks, 2 * max_shift)
    zero = np.zeros((1, C, L), np.int64)
    actual = _aligned_counts(peaks, has, zero, n_iters, 2 * max_shift)[0]  # (C,)
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n_resamples, chunk):  # bounded memory for many layers
        offsets = rng.integers(-max_shift, max_shift + 1, (min(chunk, n_resamples - start), C, L))
        parts.append(_aligned_counts(peaks, has, offsets, n_iters, 2 * max_shift))
    baseline = np.concatenate(parts) if parts else np.zeros((0, C), np.int64)  # (N, C)
    total, base_total = int(actual.sum()), baseline.sum(axis=1)
    N = max(n_resamples, 0)
    p_class = (1 + (baseline >= actual[None, :]).sum(axis=0)) / (N + 1)
    return {
        "actual": actual, "baseline": baseline, "actual_total": total,
        "actual_mean_per_class": total / C if C else float("nan"),
        "baseline_mean": baseline.mean(axis=0) if N else np.full(C, np.nan),
        "baseline_std": baseline.std(axis=0) if N else np.full(C, np.nan),
        "baseline_total_mean": float(base_total.mean()) if N else float("nan"),
        "baseline_total_std": float(base_total.std()) if N else float("nan"),
        "baseline_mean_per_class": float(base_total.mean()) / C if N and C else float("nan"),
        "p_values": p_class, "p_value": float((1 + (base_total >= total).sum()) / (N + 1)),
    }


def synchrony(data: RunBundle | np.ndarray, *, k: int = 20, max_shift: int = 2,
              n_resamples: int = 1000, seed: int = 0, per_class: bool = True) -> dict | None:
    """Top-k learning moments per class and layer, aligned moments and the shift test.

    Args:
        data: a bundle, or an array (T, C, L) of per-class per-layer LCA.
        k: peaks per (class, layer).
        max_shift: baseline offsets are drawn from {−max_shift..max_shift}.
        n_resamples: baseline resamples N.
        seed: seed of the baseline's numpy Generator.
        per_class: use ``lca_class_layer``; False (or a bundle without it) uses ``lca_layer``
            as a single pseudo-class.

    Returns:
        :func:`shift_test`'s dict plus ``peaks`` (per class, per layer: list of iterations),
        ``aligned_iterations`` (per class), ``class_names``, ``layer_names``, ``k``,
        ``max_shift``, ``n_resamples``, ``seed``, ``source``, ``n_allocated`` (iterations
        the series has; the shift test's unit is one of them); None if fewer than 3.
    """
    if isinstance(data, RunBundle):
        x = data.lca_class_layer(gaps=np.nan) if per_class else None
        source = "lca_class_layer" if x is not None else "lca_layer"
        if x is None:
            x = data.lca_layer(gaps=np.nan)[:, None, :]
        class_names = data.class_names if source == "lca_class_layer" else ["all classes"]
        layer_names = data.layer_names
    else:
        x, source = np.asarray(data), "array"
        class_names = [str(c) for c in range(x.shape[1])]
        layer_names = [str(li) for li in range(x.shape[2])]
    its = np.flatnonzero(np.isfinite(x).reshape(len(x), -1).all(axis=1))  # allocated
    x = x[its]
    if x.shape[0] < 3:
        return None
    steps = peak_table(x, k)  # (C, L, k), in allocated steps
    res = shift_test(steps, x.shape[0], max_shift=max_shift, n_resamples=n_resamples, seed=seed)
    peaks = np.where(steps >= 0, its[np.maximum(steps, 0)], -1)  # back to iterations
    aligned = []
    for c in range(peaks.shape[0]):
        sets = [set(peaks[c, li][peaks[c, li] >= 0].tolist()) for li in range(peaks.shape[1])]
        aligned.append(sorted(set.intersection(*sets)) if sets else [])
    res.update({
        "peaks": [[p[p >= 0].tolist() for p in cls] for cls in peaks],
        "aligned_iterations": aligned, "class_names": list(class_names),
        "layer_names": list(layer_names), "k": k, "max_shift": max_shift,
        "n_resamples": n_resamples, "seed": seed, "source": source,
        "n_allocated": int(len(its)),
    })
    return res
