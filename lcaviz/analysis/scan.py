"""One streaming pass over the (R, P) LCA matrix: fine histograms and a random subsample.

Which rows: one iteration's LCA per row where the run stored such rows, else every row (then
window sums of several iterations); :func:`distribution_rows` decides and
:attr:`ValueScan.rows_note` says which, so every figure and summary can state it. Columns: the
parameters that have per-parameter rows (all of them unless the run used ``--lca-layers``).

The histograms use a fixed grid, so no first pass for the range is needed: a float32's top
bits (sign, 8 exponent bits, 6 mantissa bits = ``bits >> 17``) index its bin. Each octave
[2^e, 2^(e+1)) is split into 64 equal bins (bin width ≤ 1/64 = 1.6 % of the value), and the
counts are exact on that grid. Bin 0 of each sign holds exact zeros together with
|x| < 2^-132 (≈ 1.8e-40), which are counted as zero; bins of exponent 255 (inf, NaN) are
counted as non-finite.

The subsample is drawn by choosing cell positions uniformly without replacement before the
pass (``oversample`` × the wanted size, as zeros and the other sign are dropped afterwards)
and picking those cells out of each block as it streams by; then each sign is thinned to the
wanted size at random. Every nonzero value of a sign is equally likely to be kept.

Memory: one block (``budget_bytes``, 32 MiB by default) plus about four times that for the
bit-index temporaries, plus the counts (L × 32768 int64) and the sample positions
(8 bytes × oversample × (sample_size + L × layer_sample_size)) — about 200 MiB in all
at the defaults, independent of R and P.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lcaviz.bundle import RunBundle

SHIFT = 17
HALF = 1 << (31 - SHIFT)  # 16384 fine bins per sign
FINITE = 255 << (23 - SHIFT)  # first non-finite bin (exponent 255)
SCAN_BYTES = 32 * 2**20


def fine_edges() -> np.ndarray:
    """Magnitude edges of the fine bins, (FINITE + 1,) float64; bin k = [edges[k], edges[k+1])."""
    bits = (np.arange(FINITE + 1, dtype=np.uint64) << SHIFT).astype(np.uint32)
    edges = bits.view(np.float32).astype(np.float64)
    edges[-1] = float(np.finfo(np.float32).max)  # the last finite bin closes at float32 max
    return edges


@dataclass
class ValueScan:
    """Result of :func:`scan_values`.

    ``counts[l, s, k]``: values of layer ``l`` with sign ``s`` (0: > 0, hurting; 1: < 0,
    helping) in fine bin ``k``. Samples hold magnitudes (float64, > 0).
    """

    source: str
    n_rows: int  # rows streamed (see ``rows_note``)
    layer_names: list[str]
    counts: np.ndarray  # (L, 2, HALF) int64
    help_sample: np.ndarray  # (≤ sample_size,)
    hurt_sample: np.ndarray
    layer_help_samples: list[np.ndarray] = field(default_factory=list)  # L × (≤ n_l,)
    layer_hurt_samples: list[np.ndarray] = field(default_factory=list)
    rows_note: str = ""  # which rows the statistics describe, e.g. "per-iteration LCA of …"
    per_iteration: bool = True  # False: the values are window sums of several iterations
    layers_with_rows: list[int] = field(default_factory=list)  # the others have no values

    def fine_counts(self, sign: str, layer: int | None = None) -> np.ndarray:
        """Finite fine-bin counts of one sign ("help" or "hurt"), run-wide or of one layer,
        (FINITE,) int64, zero bin excluded (set to 0)."""
        s = 1 if sign == "help" else 0
        c = (self.counts[:, s] if layer is None else self.counts[layer, s][None]).sum(axis=0)
        out = c[:FINITE].copy()
        out[0] = 0
        return out

    def n_zero(self, layer: int | None = None) -> int:
        c = self.counts if layer is None else self.counts[layer][None]
        return int(c[:, :, 0].sum())

    def n_nonfinite(self, layer: int | None = None) -> int:
        c = self.counts if layer is None else self.counts[layer][None]
        return int(c[:, :, FINITE:].sum())


def _positions(rng: np.random.Generator, n_cells: int, n_rows: int, cols: slice | np.ndarray,
               P: int, m: int) -> np.ndarray:
    """``m`` distinct flat positions k·P + c, uniform over the rows × ``cols`` cells (k counts
    the streamed rows)."""
    width = n_cells // max(n_rows, 1)
    pos = rng.choice(n_cells, size=min(m, n_cells), replace=False)
    r, j = np.divmod(pos, max(width, 1))
    col = j + cols.start if isinstance(cols, slice) else np.asarray(cols)[j]
    return r * P + col


def distribution_rows(bundle: RunBundle) -> tuple[np.ndarray, str, bool]:
    """The rows whose values distribution statistics should use, and how to say so.

    One iteration's LCA per row where the run stored such rows (a row schedule such as
    ``dense:220,10`` keeps the first 220); otherwise every row, which is then a window sum of
    several iterations, and the note says it.

    With ``--lca-every K`` a row's window also spans iterations that were not allocated; a
    row holding exactly one *allocated* iteration is that iteration's LCA.

    Returns:
        ``(row indices, note, per_iteration)``.
    """
    w = bundle.row_windows
    if bundle.n_row_cols == 0:  # --lca-layers none: rows of no parameter
        return np.zeros(0, np.int64), "no per-parameter rows", True
    if bundle.is_gapped and len(w):
        its = bundle.lca_iters()
        n_in = np.searchsorted(its, w[:, 1]) - np.searchsorted(its, w[:, 0])  # (R,)
        single = np.flatnonzero(n_in == 1)
        if len(single):
            first = its[np.searchsorted(its, w[single, 0])]
            return single, (f"per-iteration LCA of {len(single):,} allocated iterations "
                            f"(one every {bundle.lca_every}, {first[0]:,}–{first[-1]:,})"), True
        return np.arange(bundle.n_rows), ("window sums of several allocated iterations "
                                          f"(one every {bundle.lca_every})"), False
    single = bundle.single_iteration_rows()
    if len(single):
        its = w[single, 0]
        span = (f"iterations {its[0]:,}–{its[-1]:,}" if len(its) == its[-1] - its[0] + 1
                else f"{len(its):,} iterations between {its[0]:,} and {its[-1]:,}")
        return single, f"per-iteration LCA of {len(single):,} iterations ({span})", True
    rows = np.arange(bundle.n_rows)
    if not len(rows):
        return rows, "no per-parameter rows", True
    sizes = np.unique(w[:, 1] - w[:, 0])
    size = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes.min():,}–{sizes.max():,}"
    return rows, (f"window sums of {size} iterations ({len(rows):,} rows; the run stores no "
                  "per-iteration rows)"), False


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive stretches ``[a, b)`` of sorted row indices."""
    if not len(rows):
        return []
    cut = np.nonzero(np.diff(rows) != 1)[0] + 1
    return [(int(g[0]), int(g[-1]) + 1) for g in np.split(rows, cut)]


def scan_values(bundle: RunBundle, *, sample_size: int = 200_000,
                layer_sample_size: int = 20_000, seed: int = 0, source: str = "lca",
                oversample: float = 5.0, budget_bytes: int = SCAN_BYTES,
                progress=None) -> ValueScan:
    """Stream ``source`` ("lca" or "lca_val") once; see the module docstring.

    Args:
        bundle: an open bundle.
        sample_size: magnitudes kept per sign for the run-wide sample.
        layer_sample_size: magnitudes kept per sign and layer.
        seed: seed of the sampler (the result is a pure function of the data and the seed).
        source: which per-parameter matrix.
        oversample: positions drawn per wanted value (zeros and the other sign are dropped).
        budget_bytes: size of one streamed block.
        progress: called with the fraction of rows streamed after each block (it may raise
            to stop the scan: the app cancels the job of a page that was left).

    Returns:
        A :class:`ValueScan`.
    """
    rows, note, per_iteration = distribution_rows(bundle)
    R, P, L = len(rows), bundle.n_row_cols, bundle.n_layers  # P: the stored columns
    with_rows = bundle.row_layers
    rng = np.random.default_rng(seed)
    groups = [(-1, slice(0, P), sample_size)]
    groups += [(li, bundle.stored_columns(bundle.layer_columns(li)), layer_sample_size)
               for li in with_rows]
    pos_parts, tag_parts = [], []
    for tag, cols, n in groups:
        width = cols.stop - cols.start if isinstance(cols, slice) else len(cols)
        if n <= 0 or width == 0 or R == 0:
            continue
        p = _positions(rng, R * width, R, cols, P, int(oversample * n))
        pos_parts.append(p)
        tag_parts.append(np.full(p.size, tag, np.int32))
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
    tags = np.concatenate(tag_parts) if tag_parts else np.zeros(0, np.int32)
    order = np.argsort(pos, kind="stable")
    pos, tags = pos[order], tags[order]
    picked = np.zeros(pos.size, np.float32)

    layer_offset = bundle.stored_column_layers().astype(np.uint32) * np.uint32(2 * HALF)
    counts = np.zeros(L * 2 * HALF, np.int64)
    k0 = 0  # streamed rows before this stretch
    for a, e in _runs(rows):
        for r0, block in bundle.iter_row_blocks(source=source, r0=a, r1=e,
                                                budget_bytes=budget_bytes):
            idx = block.view(np.uint32) >> np.uint32(SHIFT)  # (rows, P): sign·HALF + bin
            idx += layer_offset  # layer l's bins start at l·2·HALF
            counts += np.bincount(idx.ravel(), minlength=counts.size)
            del idx
            base = (k0 + r0 - a) * P
            lo, hi = np.searchsorted(pos, [base, base + block.size])
            picked[lo:hi] = block.ravel()[pos[lo:hi] - base]
            if progress is not None:
                progress((k0 + r0 - a + block.shape[0]) / max(R, 1))
        k0 += e - a

    counts = counts.reshape(L, 2, HALF)  # the sign bit puts negatives (helping) at index 1

    def pick(tag: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        v = picked[tags == tag].astype(np.float64)
        out = []
        for mags in (-v[v < 0], v[v > 0]):
            if mags.size > n:
                mags = mags[rng.choice(mags.size, n, replace=False)]
            out.append(mags)
        return out[0], out[1]

    help_s, hurt_s = pick(-1, sample_size)
    layer_samples = [pick(li, layer_sample_size) for li in range(L)]
    return ValueScan(source=source, n_rows=R, layer_names=list(bundle.layer_names),
                     counts=counts, help_sample=help_s, hurt_sample=hurt_s,
                     layer_help_samples=[h for h, _ in layer_samples],
                     layer_hurt_samples=[u for _, u in layer_samples], rows_note=note,
                     per_iteration=per_iteration, layers_with_rows=list(with_rows))
