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
mixin :class:`~lcaviz.bundle.examples_read._BundleExamples` of :class:`~lcaviz.bundle.RunBundle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from lcaviz.bundle.h5dataset import STR, make_dataset
from lcaviz.bundle.schema import BF16_ENCODING

GROUP = "examples"
ROWS = "lca_example"  # (R, N_e, L): follows the row schedule
CUM_ROWS = "lca_example_cumsum_rows"  # (R // every, N_e, L) float32
TOTAL = "lca_example_cumsum"  # (N_e, L) float64
LOSS_ROWS = "loss_example"  # (R, N_e) float32
LOSS_LAST = "loss_example_last"  # (N_e,) float64
TOTAL_ITERS = "lca_example_iters"  # (1,) int64: T of TOTAL and LOSS_LAST
NOISE = "label_noise"
CHUNK_ELEMENTS = 16384  # per chunk of the growing datasets: 64 KiB of float32
CUMSUM_EVERY = 16  # lca_example rows per lca_example_cumsum_rows row, at most


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
                     chunks=(min(n, max(1, 2**16 // max(1, t[0].size))), *t.shape[1:]),
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
    """What does not fit in a bundle's example elements (shapes and types), as messages.

    Only ``lca_example`` is required of a bundle with examples (N_e is its second axis); every
    other element is optional for a reader, but must have the shape N_e and L imply."""
    out = []
    if NOISE in f:
        g = f[NOISE]
        a, b = (g.get("flipped"), g.get("original")) if isinstance(g, h5py.Group) else (0, 0)
        if not (isinstance(a, h5py.Dataset) and isinstance(b, h5py.Dataset) and a.ndim == 1
                and a.shape == b.shape and a.dtype.kind in "iu" and b.dtype.kind in "iu"):
            out.append("label_noise/flipped and label_noise/original must be two (K,) "
                       "integer datasets in a group")
    if ROWS not in f:
        return out
    rows = f[ROWS]
    if not isinstance(rows, h5py.Dataset) or rows.ndim != 3 or rows.shape[2] != n_layers:
        return out + [f"{ROWS} is {getattr(rows, 'shape', 'a group')}, expected "
                      f"(R, N_e, {n_layers})"]
    n, L = rows.shape[1], n_layers
    expect = {f"{GROUP}/index": (n,), CUM_ROWS: (n, L), TOTAL: (n, L), LOSS_ROWS: (n,),
              LOSS_LAST: (n,), TOTAL_ITERS: (1,), f"{GROUP}/label": (n,),
              f"{GROUP}/text": (n,), f"{GROUP}/thumbnail": None}
    fixed = (f"{GROUP}/index", TOTAL, LOSS_LAST, TOTAL_ITERS, f"{GROUP}/label", f"{GROUP}/text")
    for name, tail in expect.items():
        if name not in f:
            continue
        ds = f[name]
        if not isinstance(ds, h5py.Dataset):
            out.append(f"{name} is not a dataset")
        elif tail is None:  # the images
            if ds.dtype != np.uint8 or ds.shape[:1] != (n,) or not (
                    ds.ndim == 3 or (ds.ndim == 4 and ds.shape[3] == 3)):
                out.append(f"{name} is {ds.dtype} {ds.shape}, expected uint8 ({n}, H, W) or "
                           f"({n}, H, W, 3)")
        elif (ds.shape if name in fixed else ds.shape[1:]) != tail:
            dims = [*([] if name in fixed else ["R"]), *map(str, tail)]
            want = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
            out.append(f"{name} has shape {ds.shape}, expected {want}")
        elif name != f"{GROUP}/text" and ds.dtype.kind not in "iuf":
            out.append(f"{name} holds {ds.dtype} values, not numbers")
    if rows.dtype.kind not in "uf":
        out.append(f"{ROWS} holds {rows.dtype} values, not numbers")
    return out


def extents(f: h5py.File, R: int) -> dict[str, int]:
    """Entries along axis 0 that ``progress`` says must be in the file, for the extent check
    (after :func:`problems` found nothing)."""
    out = {}
    if NOISE in f:
        out |= {f"{NOISE}/{k}": f[f"{NOISE}/{k}"].shape[0] for k in ("flipped", "original")}
    if ROWS not in f:
        return out
    n = f[ROWS].shape[1]
    out |= {ROWS: R, LOSS_ROWS: R, TOTAL: n, LOSS_LAST: n}
    if CUM_ROWS in f:
        out[CUM_ROWS] = R // max(1, int(f[CUM_ROWS].attrs.get("every", 1)))
    out |= {f"{GROUP}/{k}": n for k in ("index", "label", "thumbnail", "text")}
    return {k: v for k, v in out.items() if k in f}
