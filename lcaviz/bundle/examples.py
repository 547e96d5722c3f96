"""Per-example LCA in the bundle (issue 24, format version 3): which training examples each
layer's steps lowered or raised the loss of (numpy + h5py only; computed by ``compute``).

For step t, tracked example n and layer l, ``E[t, n, l] = (1/N) Σ_k w_k ∇_{θ_l} ℓ_n(θ_k) ·
(θ_{t+1} − θ_t)_l`` with the integrator's own nodes, so over all N examples
``Σ_n E[t, n, l] = lca_layer[t, l]``. Elements (docs/bundle-format.md, *Per-example LCA*):

* ``examples/index`` (N_e,) int64, ``examples/label`` (N_e,) int64 (optional),
  ``examples/thumbnail`` (N_e, H, W[, 3]) uint8 (optional, gzip), ``examples/text`` (N_e,) str
  (optional): the tracked examples, fixed when the run starts;
* ``lca_example`` (R, N_e, L) float32 (or bfloat16 bits as ``lca``): row r = Σ of E over the
  iterations of ``lca_rows[r]``; ``lca_example_cumsum_rows`` (R // E, N_e, L) float32, row k =
  Σ of rows 0 .. (k+1)·E − 1 from the exact float64 running sum (attr ``every`` = E);
* ``lca_example_cumsum`` (N_e, L) float64: Σ of E over every appended iteration;
  ``loss_example`` (R, N_e) float32: ℓ_n at the θ that starts each row window;
  ``loss_example_last`` (N_e,) float64: ℓ_n after the last appended iteration;
  ``lca_example_iters`` (1,) int64: the T those two cover (rewritten at every flush);
* ``label_noise/flipped``, ``label_noise/original`` (K,) int64, attrs ``fraction``, ``seed``.

The writer's accumulator is :mod:`lcaviz.bundle.example_rows`; the reader's accessors are the
mixin :class:`_BundleExamples` of :class:`~lcaviz.bundle.RunBundle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from lcaviz.bundle.errors import MissingExamplesError, read_guard
from lcaviz.bundle.h5dataset import STR, make_dataset
from lcaviz.bundle.schema import BF16_ENCODING, from_bfloat16

GROUP = "examples"
ROWS = "lca_example"  # (R, N_e, L): follows the row schedule
CUM_ROWS = "lca_example_cumsum_rows"  # (R // every, N_e, L) float32
TOTAL = "lca_example_cumsum"  # (N_e, L) float64
LOSS_ROWS = "loss_example"  # (R, N_e) float32
LOSS_LAST = "loss_example_last"  # (N_e,) float64
TOTAL_ITERS = "lca_example_iters"  # (1,) int64: T of TOTAL and LOSS_LAST
NOISE = "label_noise"
CHUNK_ELEMENTS = 16384  # per chunk of the growing datasets: 64 KiB of float32


@dataclass
class ExampleInfo:
    """The tracked examples of a run (``LayoutInfo.examples``).

    Attributes:
        index: (N_e,) positions in the training split, int64.
        label: (N_e,) their as-trained class labels, or None (targets that are not classes).
        thumbnail: uint8 (N_e, H, W) or (N_e, H, W, 3) images, or None.
        text: N_e strings (e.g. ``"3 + 5 ≡ 8 (mod 97)"``), or None.
    """

    index: np.ndarray
    label: np.ndarray | None = None
    thumbnail: np.ndarray | None = None
    text: list[str] | None = None

    def checked(self) -> ExampleInfo:
        """The same arrays with their dtypes fixed; ValueError for shapes that disagree."""
        index = np.asarray(self.index)
        if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
            raise ValueError(f"examples.index must be a non-empty 1-d integer array, got "
                             f"{index.dtype} {index.shape}")
        n = index.size
        label = None if self.label is None else np.asarray(self.label)
        if label is not None and (label.shape != (n,) or label.dtype.kind not in "iu"):
            raise ValueError(f"examples.label must be ({n},) integers, got {label.dtype} "
                             f"{label.shape}")
        thumb = None if self.thumbnail is None else np.asarray(self.thumbnail)
        if thumb is not None and (thumb.dtype != np.uint8 or thumb.shape[:1] != (n,) or not (
                thumb.ndim == 3 or (thumb.ndim == 4 and thumb.shape[3] == 3))):
            raise ValueError(f"examples.thumbnail must be uint8 ({n}, H, W) or ({n}, H, W, 3),"
                             f" got {thumb.dtype} {thumb.shape}")
        if self.text is not None and len(self.text) != n:
            raise ValueError(f"examples.text must hold {n} strings, got {len(self.text)}")
        return ExampleInfo(index.astype(np.int64), None if label is None
                           else label.astype(np.int64), thumb,
                           None if self.text is None else [str(s) for s in self.text])


def row_chunks(n_examples: int, tail: int) -> tuple[int, ...]:
    """Chunk of a growing (rows, N_e[, tail]) dataset: one row high, N_e split evenly into
    pieces of at most :data:`CHUNK_ELEMENTS` (a row read touches few chunks; one example's
    curve over R rows reads R chunks of 64 KiB, not R whole rows)."""
    per = max(1, CHUNK_ELEMENTS // max(tail, 1))
    width = -(-n_examples // -(-n_examples // per))
    return (1, width, tail) if tail else (1, width)


def create(f: h5py.File, info: ExampleInfo, n_layers: int, *, bfloat16: bool, every: int,
           packed: dict) -> None:
    """The example group and the empty growing datasets (before SWMR: nothing can be created
    after). ``packed`` holds the gzip settings of the per-parameter rows (or nothing)."""
    info = info.checked()
    n, L = info.index.size, n_layers
    g = f.create_group(GROUP)
    make_dataset(g, "index", (n,), np.int64, "positions in the training split of the tracked "
                 "examples", data=info.index)
    if info.label is not None:
        make_dataset(g, "label", (n,), np.int64, "as-trained class label", data=info.label)
    if info.thumbnail is not None:
        t = info.thumbnail
        make_dataset(g, "thumbnail", t.shape, np.uint8, "uint8 image of each example", data=t,
                     chunks=(min(n, max(1, 2**20 // max(1, t[0].size))), *t.shape[1:]),
                     compression="gzip", compression_opts=4, shuffle=True)
    if info.text is not None:
        make_dataset(g, "text", (n,), STR, "text of each example", data=info.text)
    dtype, enc = (np.uint16, BF16_ENCODING) if bfloat16 else (np.float32, None)
    make_dataset(f, ROWS, (0, n, L), dtype, "per-example LCA per layer, exact sums over each "
                 "row's window", maxshape=(None, n, L), chunks=row_chunks(n, L), encoding=enc,
                 **packed)
    make_dataset(f, CUM_ROWS, (0, n, L), np.float32, "sum of lca_example rows "
                 "0..(k+1)*every-1", maxshape=(None, n, L), chunks=row_chunks(n, L), **packed)
    f[CUM_ROWS].attrs["every"] = int(every)
    make_dataset(f, LOSS_ROWS, (0, n), np.float32, "per-example loss at the theta that "
                 "starts each row window", maxshape=(None, n), chunks=row_chunks(n, 0), **packed)
    # fixed-size, rewritten at every flush: contiguous, allocated now (never "unwritten")
    make_dataset(f, TOTAL, (n, L), np.float64, "sum of per-example LCA over all iterations",
                 data=np.zeros((n, L)))
    make_dataset(f, LOSS_LAST, (n,), np.float64, "per-example loss after the last iteration",
                 data=np.full(n, np.nan))
    make_dataset(f, TOTAL_ITERS, (1,), np.int64, "iterations lca_example_cumsum and "
                 "loss_example_last cover", data=np.zeros(1, np.int64))


def create_noise(f: h5py.File, noise: dict) -> None:
    """``label_noise``: the flipped training positions, their true labels, fraction, seed."""
    flipped = np.asarray(noise["flipped"], np.int64).ravel()
    original = np.asarray(noise["original"], np.int64).ravel()
    if flipped.shape != original.shape:
        raise ValueError(f"label_noise: {flipped.size} flipped positions but "
                         f"{original.size} original labels")
    g = f.create_group(NOISE)
    make_dataset(g, "flipped", flipped.shape, np.int64, "training positions whose label was "
                 "flipped", data=flipped)
    make_dataset(g, "original", original.shape, np.int64, "their true labels", data=original)
    g.attrs["fraction"], g.attrs["seed"] = float(noise["fraction"]), int(noise["seed"])


def truncate(f: h5py.File, R: int) -> None:
    """Keep the rows of the first ``R`` windows (a resume); the totals are rewritten by the
    writer from its checkpointed state."""
    if ROWS in f:
        for name in (ROWS, LOSS_ROWS):
            f[name].resize(R, axis=0)
        f[CUM_ROWS].resize(R // int(f[CUM_ROWS].attrs["every"]), axis=0)


def problems(f: h5py.File, n_layers: int) -> list[str]:
    """What does not fit in a bundle's example elements (shapes and types), as messages."""
    if ROWS not in f and GROUP not in f:
        return []
    need = (f"{GROUP}/index", ROWS, CUM_ROWS, TOTAL, LOSS_ROWS, LOSS_LAST, TOTAL_ITERS)
    missing = [k for k in need if k not in f or not isinstance(f[k], h5py.Dataset)]
    if missing:
        return [f"per-example datasets missing: {', '.join(missing)}"]
    index = f[f"{GROUP}/index"]
    n, L = (index.shape[0] if index.ndim == 1 else -1), n_layers
    expect = {f"{GROUP}/index": (n,), ROWS: (n, L), CUM_ROWS: (n, L), TOTAL: (n, L),
              LOSS_ROWS: (n,), LOSS_LAST: (n,), TOTAL_ITERS: (1,), f"{GROUP}/label": (n,),
              f"{GROUP}/text": (n,)}
    if n < 0:
        return [f"{GROUP}/index has shape {index.shape}, expected (N_e,)"]
    out = []
    for name, tail in expect.items():
        if name not in f:
            continue
        ds = f[name]
        fixed = name in (f"{GROUP}/index", TOTAL, LOSS_LAST, TOTAL_ITERS, f"{GROUP}/label",
                         f"{GROUP}/text")
        shape = ds.shape if fixed else ds.shape[1:]
        if shape != tail:
            out.append(f"{name} has shape {ds.shape}, expected ({'' if fixed else 'R, '}"
                       f"{', '.join(map(str, tail))})")
        elif name != f"{GROUP}/text" and ds.dtype.kind not in "iuf":
            out.append(f"{name} holds {ds.dtype} values, not numbers")
    thumb = f.get(f"{GROUP}/thumbnail")
    if thumb is not None and not out and (
            thumb.dtype != np.uint8 or thumb.shape[:1] != (n,)
            or not (thumb.ndim == 3 or (thumb.ndim == 4 and thumb.shape[3] == 3))):
        out.append(f"{GROUP}/thumbnail is {thumb.dtype} {thumb.shape}, expected uint8 "
                   f"({n}, H, W) or ({n}, H, W, 3)")
    if NOISE in f:
        g = f[NOISE]
        a, b = g.get("flipped"), g.get("original")
        if not (isinstance(a, h5py.Dataset) and isinstance(b, h5py.Dataset) and a.ndim == 1
                and a.shape == b.shape and a.dtype.kind in "iu" and b.dtype.kind in "iu"):
            out.append("label_noise/flipped and label_noise/original must be two (K,) "
                       "integer datasets")
    return out


def extents(f: h5py.File, R: int) -> dict[str, int]:
    """Entries along axis 0 that ``progress`` says must be in the file, for the extent check."""
    if ROWS not in f:
        return {}
    every = max(1, int(f[CUM_ROWS].attrs.get("every", 1)))
    n = f[f"{GROUP}/index"].shape[0]
    return {ROWS: R, LOSS_ROWS: R, CUM_ROWS: R // every, TOTAL: n, LOSS_LAST: n,
            f"{GROUP}/index": n}


def _pick(block: np.ndarray, off: np.ndarray) -> np.ndarray:
    """The rows ``off`` of a bounding-box read (the block itself when they are all of it)."""
    whole = len(off) == block.shape[0] and np.array_equal(off, np.arange(len(off)))
    return block if whole else block[off]


def _decode(x: np.ndarray) -> np.ndarray:
    return (from_bfloat16(x) if x.dtype == np.uint16 else x).astype(np.float64)


class _BundleExamples:
    """Per-example accessors of :class:`~lcaviz.bundle.RunBundle` (a mixin: the reader provides
    ``_f``, ``_lock``, ``_dataset``, ``path``, ``n_rows`` and ``n_layers``). ``sel`` selects
    tracked examples (positions 0..N_e−1 of :meth:`example_index`): None (all), an int array,
    a slice or a boolean mask."""

    @property
    def has_examples(self) -> bool:
        """Whether the run tracked per-example LCA (``lca_example``)."""
        with self._lock:
            return self._f is not None and ROWS in self._f

    def _need_examples(self) -> None:
        if not self.has_examples:
            raise MissingExamplesError(
                f"{self.path}: this run has no per-example LCA (made without lca-run "
                "--per-example or LCATracker(per_example=...))")

    @property
    def n_examples(self) -> int:
        """N_e, the number of tracked examples (0 without per-example LCA)."""
        return int(self._dataset(f"{GROUP}/index").shape[0]) if self.has_examples else 0

    def _read_sel(self, name: str, key: tuple, sel, axis: int) -> np.ndarray:
        """``name[key]`` with the examples ``sel`` on ``axis``: a bounding-box read, then
        indexed (h5py point selections are slow and demand increasing indices)."""
        self._need_examples()
        n = self.n_examples
        with self._lock, read_guard(self.path, f"reading {name!r}"):
            ds = self._dataset(name)
            if sel is None:
                return ds[key] if key else ds[()]
            if isinstance(sel, slice):
                idx = np.arange(n)[sel]
            else:
                idx = np.asarray(sel)
                idx = np.nonzero(idx)[0] if idx.dtype == bool else idx.astype(np.int64).ravel()
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"example {int(idx.max())} out of range (N_e = {n})")
            idx = idx % n if idx.size else idx
            lo, hi = (int(idx.min()), int(idx.max()) + 1) if idx.size else (0, 0)
            box = ds[(*key, slice(lo, hi))]
            return np.take(box, idx - lo, axis=axis)

    def _rows_key(self, rows) -> tuple[np.ndarray, slice]:
        """Row numbers asked for (within R) and the slice that bounds them."""
        R = self.n_rows
        if rows is None:
            r = np.arange(R)
        elif isinstance(rows, slice):
            r = np.arange(R)[rows]
        else:
            r = np.asarray(rows, np.int64).ravel()
            if r.size and (r.min() < -R or r.max() >= R):
                raise IndexError(f"row out of range ({R} rows)")
            r = r % R if R else r
        lo, hi = (int(r.min()), int(r.max()) + 1) if r.size else (0, 0)
        return r - lo, slice(lo, hi)

    def example_index(self) -> np.ndarray:
        """Positions in the training split of the tracked examples, (N_e,) int64."""
        return np.asarray(self._read_sel(f"{GROUP}/index", (), None, 0), np.int64)

    def example_labels(self) -> np.ndarray | None:
        """As-trained class label of each tracked example, (N_e,) int64, or None."""
        self._need_examples()
        if f"{GROUP}/label" not in self._f:
            return None
        return np.asarray(self._read_sel(f"{GROUP}/label", (), None, 0), np.int64)

    def example_lca(self, r: int, sel=None) -> np.ndarray:
        """Row ``r`` of ``lca_example`` (negative counts from the end), (N_e, L) float64."""
        R = self.n_rows
        if not -R <= r < R:
            raise IndexError(f"row {r} out of range ({R} rows of {ROWS!r})")
        r %= R
        return _decode(self._read_sel(ROWS, (slice(r, r + 1),), sel, 1)[0])

    def example_lca_rows(self, rows=None, sel=None) -> np.ndarray:
        """Rows of ``lca_example`` (None: all R; a slice or row numbers), (R', N_e, L)
        float64. ``sel`` keeps it small: one example over all rows reads R small chunks."""
        off, key = self._rows_key(rows)
        self._need_examples()
        block = self._read_sel(ROWS, (key,), sel, 1)
        return _decode(_pick(block, off))

    def example_cumsum(self, sel=None) -> np.ndarray:
        """Σ of per-example LCA over every iteration written (as of the writer's last flush;
        the run's whole total once complete), (N_e, L) float64 from the float64 sum."""
        return np.asarray(self._read_sel(TOTAL, (), sel, 0), np.float64)

    def example_cumsum_upto(self, r: int, sel=None) -> np.ndarray:
        """Σ of ``lca_example`` rows 0..r inclusive, (N_e, L) float64: one
        ``lca_example_cumsum_rows`` row (float32 of the exact running sum) plus at most
        ``every − 1`` rows; r = −1 gives zeros."""
        R = self.n_rows
        if not -1 <= r < R:
            raise IndexError(f"row {r} out of range (R = {R})")
        self._need_examples()
        every = max(1, int(self._dataset(CUM_ROWS).attrs.get("every", 1)))
        k = min((r + 1) // every, self._dataset(CUM_ROWS).shape[0], R // every)
        n = self.n_examples if sel is None else len(np.arange(self.n_examples)[sel])
        total = np.zeros((n, self.n_layers), np.float64)
        if k:
            total += self._read_sel(CUM_ROWS, (slice(k - 1, k),), sel, 1)[0]
        if r + 1 > k * every:
            total += _decode(self._read_sel(ROWS, (slice(k * every, r + 1),), sel, 1)).sum(0)
        return total

    def example_loss(self, rows=None, sel=None) -> np.ndarray:
        """ℓ_n at the θ that starts each row window, (R', N_e) float64 (NaN where the run did
        not evaluate it)."""
        off, key = self._rows_key(rows)
        block = self._read_sel(LOSS_ROWS, (key,), sel, 1)
        return np.asarray(_pick(block, off), np.float64)

    def example_loss_last(self, sel=None) -> np.ndarray:
        """ℓ_n after the last iteration written (as of the last flush), (N_e,) float64."""
        return np.asarray(self._read_sel(LOSS_LAST, (), sel, 0), np.float64)

    def example_thumbnails(self, sel=None) -> np.ndarray | None:
        """uint8 images (N', H, W) or (N', H, W, 3) of the tracked examples, or None."""
        self._need_examples()
        if f"{GROUP}/thumbnail" not in self._f:
            return None
        return np.asarray(self._read_sel(f"{GROUP}/thumbnail", (), sel, 0), np.uint8)

    def example_texts(self, sel=None) -> list[str] | None:
        """The text of each tracked example (e.g. ``"3 + 5 ≡ 8 (mod 97)"``), or None. Strings
        come from the file: escape them before showing them."""
        self._need_examples()
        if f"{GROUP}/text" not in self._f:
            return None
        raw = self._read_sel(f"{GROUP}/text", (), sel, 0)
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in np.atleast_1d(raw)]

    def label_noise(self) -> dict | None:
        """``{"fraction", "seed", "flipped" (K,), "original" (K,)}`` of a run made with label
        noise, else None."""
        with self._lock, read_guard(self.path, "reading 'label_noise'"):
            if self._f is None or NOISE not in self._f:
                return None
            g = self._f[NOISE]
            return {"fraction": float(g.attrs.get("fraction", np.nan)),
                    "seed": int(g.attrs.get("seed", -1)),
                    "flipped": np.asarray(g["flipped"][()], np.int64),
                    "original": np.asarray(g["original"][()], np.int64)}
