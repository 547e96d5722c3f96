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
* ``label_noise/flipped``, ``label_noise/original`` (K,) int64, attrs ``fraction``, ``seed``;
* the twins (:mod:`lcaviz.bundle.example_sets`): per split group (``examples/groups`` (G_s,)
  int64 into ``params/groups``; ``lca_example_group*`` with last axis G_s) and of the
  validation examples (``val_examples/*`` into the validation split, ``lca_val_example*``,
  ``loss_val_example*``, and with groups ``lca_val_example_group*``).

The writer's accumulator is :mod:`lcaviz.bundle.example_rows`; the reader's accessors are the
mixin :class:`~lcaviz.bundle.examples_read._BundleExamples` of :class:`~lcaviz.bundle.RunBundle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from lcaviz.bundle.example_sets import (  # noqa: F401 - re-exported
    BYS,
    SETS,
    SPLITS,
    TRAIN,
    ExampleSet,
    example_set,
)
from lcaviz.bundle.h5dataset import STR, make_dataset
from lcaviz.bundle.schema import BF16_ENCODING

GROUP = "examples"
ROWS = "lca_example"  # (R, N_e, L): follows the row schedule
CUM_ROWS = "lca_example_cumsum_rows"  # (R // every, N_e, L) float32
TOTAL = "lca_example_cumsum"  # (N_e, L) float64
LOSS_ROWS = "loss_example"  # (R, N_e) float32
LOSS_LAST = "loss_example_last"  # (N_e,) float64
TOTAL_ITERS = "lca_example_iters"  # (1,) int64: T of TOTAL and LOSS_LAST
GROUPS = f"{GROUP}/groups"  # (G_s,) int64: the split groups of the *_group sets
NOISE = "label_noise"
CHUNK_ELEMENTS = 16384  # per chunk of the growing datasets: 64 KiB of float32
CUMSUM_EVERY = 16  # lca_example rows per lca_example_cumsum_rows row, at most
# datasets that grow one entry per row (a live reader shows the rows all of them hold)
ROW_DATASETS = tuple(name for es in SETS for name in (es.rows, *es.growing()[2:]))


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
           packed: dict, split: str = "train") -> None:
    """The examples of ``split`` (``examples/*`` or ``val_examples/*``) and their empty
    per-layer growing datasets (before SWMR: nothing can be created after). ``packed`` holds
    the gzip settings of the per-parameter rows (or nothing)."""
    info = info.checked()
    es = example_set(split)
    n = info.index.size
    g = f.create_group(es.meta)
    where = "validation" if split == "val" else "training"
    make_dataset(g, "index", (n,), np.int64, f"positions in the {where} split of the tracked "
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
    create_set(f, es, n, n_layers, bfloat16=bfloat16, every=every, packed=packed)


def create_set(f: h5py.File, es: ExampleSet, n: int, tail: int, *, bfloat16: bool, every: int,
               packed: dict) -> None:
    """The empty datasets of one set: rows (R, n, tail), running-total rows, the float64
    total, and for a per-layer set the losses and the iterations they cover."""
    what = "per layer" if es.by == "layer" else "per split group"
    dtype, enc = (np.uint16, BF16_ENCODING) if bfloat16 else (np.float32, None)
    make_dataset(f, es.rows, (0, n, tail), dtype, f"per-example LCA {what}, exact sums over "
                 "each row's window", maxshape=(None, n, tail), chunks=row_chunks(n, tail),
                 encoding=enc, **packed)
    make_dataset(f, es.cum_rows, (0, n, tail), np.float32, f"sum of {es.rows} rows "
                 "0..(k+1)*every-1", maxshape=(None, n, tail), chunks=row_chunks(n, tail),
                 **packed)
    f[es.cum_rows].attrs["every"] = int(every)
    # fixed-size, rewritten at every flush: contiguous, allocated now (never "unwritten")
    make_dataset(f, es.total, (n, tail), np.float64, f"sum of {es.rows} over all iterations",
                 data=np.zeros((n, tail)))
    if not es.has_loss:
        return
    make_dataset(f, es.loss_rows, (0, n), np.float32, "per-example loss at the theta that "
                 "starts each row window", maxshape=(None, n), chunks=row_chunks(n, 0), **packed)
    make_dataset(f, es.loss_last, (n,), np.float64, "per-example loss after the last iteration",
                 data=np.full(n, np.nan))
    make_dataset(f, es.iters, (1,), np.int64, f"iterations {es.total} and {es.loss_last} "
                 "cover", data=np.zeros(1, np.int64))


def checked_groups(example_groups, n_groups: int) -> np.ndarray:
    """``LayoutInfo.example_groups`` as (G_s,) int64; ValueError unless strictly increasing
    indices into the run's ``n_groups`` groups."""
    g = np.asarray(example_groups)
    if g.ndim != 1 or (g.size and g.dtype.kind not in "iu"):
        raise ValueError(f"example_groups must be a 1-d integer array, got {g.dtype} {g.shape}")
    g = g.astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= n_groups or np.any(np.diff(g) <= 0)):
        raise ValueError(f"example_groups must be increasing indices into the run's "
                         f"{n_groups} groups, got {g.tolist()[:8]}")
    return g


def create_groups(f: h5py.File, example_groups: np.ndarray, sizes: dict[str, int], *,
                  bfloat16: bool, every: int, packed: dict) -> None:
    """``examples/groups`` and the per-group sets of every split in ``sizes`` (split → its
    number of tracked examples)."""
    g = np.asarray(example_groups, np.int64)
    make_dataset(f[GROUP], "groups", g.shape, np.int64, "indices into params/groups of the "
                 "groups with per-example values (the *_group datasets' last axis)", data=g)
    for split, n in sizes.items():
        create_set(f, ExampleSet(split, "group"), n, g.size, bfloat16=bfloat16, every=every,
                   packed=packed)


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
    for es in SETS:
        if es.rows in f:
            for name in (es.rows, *([es.loss_rows] if es.has_loss else [])):
                f[name].resize(R, axis=0)
            f[es.cum_rows].resize(R // int(f[es.cum_rows].attrs["every"]), axis=0)


def problems(f: h5py.File, n_layers: int) -> list[str]:
    """What does not fit in a bundle's example elements (shapes and types), as messages.

    Only ``lca_example`` (``lca_val_example``) is required of a bundle with (validation)
    examples (N_e is its second axis); every other element is optional for a reader, but must
    have the shape N_e, L and G_s imply. The per-group sets need ``examples/groups``."""
    out = []
    if NOISE in f:
        g = f[NOISE]
        a, b = (g.get("flipped"), g.get("original")) if isinstance(g, h5py.Group) else (0, 0)
        if not (isinstance(a, h5py.Dataset) and isinstance(b, h5py.Dataset) and a.ndim == 1
                and a.shape == b.shape and a.dtype.kind in "iu" and b.dtype.kind in "iu"):
            out.append("label_noise/flipped and label_noise/original must be two (K,) "
                       "integer datasets in a group")
    n_split = None
    if GROUPS in f:
        ds = f[GROUPS]
        names = f.get("params/groups/names")
        n_groups = names.shape[0] if isinstance(names, h5py.Dataset) and names.ndim == 1 else 0
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "iu":
            out.append(f"{GROUPS} must be a (G_s,) integer dataset")
        elif ds.shape[0] and (int(ds[()].min()) < 0 or int(ds[()].max()) >= n_groups):
            out.append(f"{GROUPS} refers to groups outside 0..{n_groups - 1} (params/groups)")
        else:
            n_split = ds.shape[0]
    for split in SPLITS:
        out += _set_problems(f, split, n_layers, n_split)
    return out


def _set_problems(f: h5py.File, split: str, L: int, n_split: int | None) -> list[str]:
    lay, grp = ExampleSet(split, "layer"), ExampleSet(split, "group")
    if lay.rows not in f:
        return [f"{grp.rows} without {lay.rows}"] if grp.rows in f else []
    rows = f[lay.rows]
    if not isinstance(rows, h5py.Dataset) or rows.ndim != 3 or rows.shape[2] != L:
        return [f"{lay.rows} is {getattr(rows, 'shape', 'a group')}, expected (R, N_e, {L})"]
    n, m = rows.shape[1], lay.meta
    expect = {f"{m}/index": (n,), lay.cum_rows: (n, L), lay.total: (n, L), lay.loss_rows: (n,),
              lay.loss_last: (n,), lay.iters: (1,), f"{m}/label": (n,), f"{m}/text": (n,),
              f"{m}/thumbnail": None}
    fixed = {f"{m}/index", lay.total, lay.loss_last, lay.iters, f"{m}/label", f"{m}/text"}
    out, numeric = [], [lay.rows]
    if grp.rows in f:
        if n_split is None:
            return [f"{grp.rows} needs a valid {GROUPS} (its last axis)"]
        expect |= {grp.rows: (n, n_split), grp.cum_rows: (n, n_split), grp.total: (n, n_split)}
        fixed.add(grp.total)
        numeric.append(grp.rows)
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
        elif name != f"{m}/text" and ds.dtype.kind not in "iuf":
            out.append(f"{name} holds {ds.dtype} values, not numbers")
    out += [f"{name} holds {f[name].dtype} values, not numbers" for name in numeric
            if isinstance(f[name], h5py.Dataset) and f[name].dtype.kind not in "uf"
            and not any(name in o for o in out)]
    return out


def extents(f: h5py.File, R: int) -> dict[str, int]:
    """Entries along axis 0 that ``progress`` says must be in the file, for the extent check
    (after :func:`problems` found nothing)."""
    out = {}
    if NOISE in f:
        out |= {f"{NOISE}/{k}": f[f"{NOISE}/{k}"].shape[0] for k in ("flipped", "original")}
    if GROUPS in f:
        out[GROUPS] = f[GROUPS].shape[0]
    for es in SETS:
        if es.rows not in f:
            continue
        n = f[es.rows].shape[1]
        out |= {es.rows: R, es.total: n}
        if es.has_loss:
            out |= {es.loss_rows: R, es.loss_last: n}
            out |= {f"{es.meta}/{k}": n for k in ("index", "label", "thumbnail", "text")}
        if es.cum_rows in f:
            out[es.cum_rows] = R // max(1, int(f[es.cum_rows].attrs.get("every", 1)))
    return {k: v for k, v in out.items() if k in f}
