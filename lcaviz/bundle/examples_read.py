"""The per-example accessors of :class:`~lcaviz.bundle.RunBundle` (the datasets are described
in :mod:`lcaviz.bundle.examples` and docs/bundle-format.md).

Every accessor takes keyword-only ``split="train"`` (``"val"``: the validation examples) and,
where it returns per-layer values, ``by="layer"`` (``"group"``: the columns are the split
groups, :attr:`~_BundleExamples.example_group_names`)."""

from __future__ import annotations

import numpy as np

from lcaviz.bundle.errors import MissingExamplesError, read_guard
from lcaviz.bundle.examples import GROUPS, NOISE, TRAIN, ExampleSet, example_set
from lcaviz.bundle.schema import from_bfloat16


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

    def _in_file(self, name: str) -> bool:
        with self._lock:
            return self._f is not None and name in self._f

    @property
    def has_examples(self) -> bool:
        """Whether the run tracked per-example LCA (``lca_example``)."""
        return self._in_file(TRAIN.rows)

    @property
    def has_val_examples(self) -> bool:
        """Whether the run tracked per-example LCA of the validation loss
        (``lca_val_example``)."""
        return self._in_file(ExampleSet("val").rows)

    @property
    def has_example_groups(self) -> bool:
        """Whether the run stores per-example values per split group (``lca_example_group``
        and ``examples/groups``)."""
        return self._in_file(ExampleSet("train", "group").rows) and self._in_file(GROUPS)

    def has_example_set(self, split: str = "train", by: str = "layer") -> bool:
        """Whether the bundle stores the per-example values of ``split`` ``by`` layer or
        group (ValueError for another split / by)."""
        es = example_set(split, by)
        return self._in_file(es.rows) and (by == "layer" or self._in_file(GROUPS))

    def _set(self, split: str = "train", by: str = "layer") -> ExampleSet:
        """The set asked for; ValueError for a split / by the bundle lacks (a bundle without
        any examples: MissingExamplesError)."""
        es = example_set(split, by)
        if self._in_file(es.rows):
            return es
        if not self.has_examples:
            self._need_examples()
        what = {("val", "layer"): "per-example LCA of the validation loss (lca_val_example: "
                                  "--per-example with --val-lca)",
                ("train", "group"): "per-example values per group (lca_example_group: "
                                    "a run with groups finer than its layers)",
                ("val", "group"): "validation per-example values per group "
                                  "(lca_val_example_group)"}[(es.split, es.by)]
        raise ValueError(f"{self.path}: this run has no {what}")

    def _need_examples(self) -> None:
        if not self.has_examples:
            raise MissingExamplesError(
                f"{self.path}: this run has no per-example LCA (made without lca-run "
                "--per-example or LCATracker(per_example=...))")

    @property
    def n_examples(self) -> int:
        """N_e, the number of tracked training examples (0 without per-example LCA)."""
        return int(self._dataset(TRAIN.rows).shape[1]) if self.has_examples else 0

    @property
    def n_val_examples(self) -> int:
        """N_v, the number of tracked validation examples (0 without them)."""
        return int(self._dataset(ExampleSet("val").rows).shape[1]) \
            if self.has_val_examples else 0

    def _n_of(self, es: ExampleSet) -> int:
        return int(self._dataset(es.rows).shape[1])

    def example_groups(self) -> np.ndarray:
        """Indices into :attr:`group_names` of the split groups with per-example values,
        (G_s,) int64; ValueError without them."""
        self._set("train", "group")
        with self._lock, read_guard(self.path, f"reading {GROUPS!r}"):
            return np.asarray(self._dataset(GROUPS)[()], np.int64)

    @property
    def example_group_names(self) -> list[str]:
        """Names of the ``by="group"`` columns (the split groups), [] without them."""
        if not self.has_example_groups:
            return []
        names = self.group_names
        return [names[int(g)] for g in self.example_groups()]

    def _has(self, name: str) -> bool:
        self._need_examples()
        with self._lock:
            return name in self._f

    def _read_sel(self, name: str, key: tuple, sel, axis: int) -> np.ndarray:
        """``name[key]`` with the examples ``sel`` on ``axis`` (after the ``key`` axes).

        Selected examples closer together than a chunk are read as one span, then indexed:
        h5py point selections are slow and demand increasing indices, and one bounding box
        around a few scattered examples would read (and decompress) nearly every image."""
        self._need_examples()
        with self._lock, read_guard(self.path, f"reading {name!r}"):
            ds = self._dataset(name)
            n = ds.shape[axis]
            if sel is None:
                return ds[key] if key else ds[()]
            if isinstance(sel, slice):
                idx = np.arange(n)[sel]
            else:
                idx = np.asarray(sel)
                idx = np.nonzero(idx)[0] if idx.dtype == bool else idx.astype(np.int64).ravel()
            bad = idx[(idx < -n) | (idx >= n)]
            if bad.size:
                raise IndexError(f"example {int(bad[0])} out of range (N_e = {n})")
            if idx.size == 0:
                return ds[(*key, slice(0, 0))]
            idx = idx % n
            order = np.argsort(idx, kind="stable")
            s = idx[order]
            gap = ds.chunks[axis] if ds.chunks else 4096
            parts = [np.take(ds[(*key, slice(int(s[g[0]]), int(s[g[-1]]) + 1))],
                             s[g] - s[g[0]], axis=axis)
                     for g in np.split(np.arange(s.size), np.nonzero(np.diff(s) > gap)[0] + 1)]
            back = np.empty_like(order)
            back[order] = np.arange(order.size)
            return np.take(np.concatenate(parts, axis=axis), back, axis=axis)

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

    def example_index(self, *, split: str = "train") -> np.ndarray:
        """Positions in the training (validation) split of the tracked examples, (N,) int64
        (0..N−1 for a bundle of another program's without ``examples/index``)."""
        es = self._set(split)
        if not self._has(f"{es.meta}/index"):
            return np.arange(self._n_of(es), dtype=np.int64)
        return np.asarray(self._read_sel(f"{es.meta}/index", (), None, 0), np.int64)

    def example_labels(self, *, split: str = "train") -> np.ndarray | None:
        """As-trained class label of each tracked example, (N,) int64, or None."""
        es = self._set(split)
        if not self._has(f"{es.meta}/label"):
            return None
        return np.asarray(self._read_sel(f"{es.meta}/label", (), None, 0), np.int64)

    def example_lca(self, r: int, sel=None, *, split: str = "train", by: str = "layer"
                    ) -> np.ndarray:
        """Row ``r`` of ``lca_example`` (negative counts from the end), (N_e, L) float64
        (``by="group"``: (N_e, G_s))."""
        es, R = self._set(split, by), self.n_rows
        if not -R <= r < R:
            raise IndexError(f"row {r} out of range ({R} rows of {es.rows!r})")
        r %= R
        return _decode(self._read_sel(es.rows, (slice(r, r + 1),), sel, 1)[0])

    def example_lca_rows(self, rows=None, sel=None, *, split: str = "train",
                         by: str = "layer") -> np.ndarray:
        """Rows of ``lca_example`` (None: all R; a slice or row numbers), (R', N_e, L)
        float64. ``sel`` keeps it small: one example over all rows reads R small chunks."""
        es = self._set(split, by)
        off, key = self._rows_key(rows)
        block = self._read_sel(es.rows, (key,), sel, 1)
        return _decode(_pick(block, off))

    def example_cumsum(self, sel=None, *, split: str = "train", by: str = "layer"
                       ) -> np.ndarray:
        """Σ of per-example LCA over every iteration written (as of the writer's last flush;
        the run's whole total once complete), (N_e, L) float64 from the float64 sum (a bundle
        without ``lca_example_cumsum``: the sum of its rows)."""
        es = self._set(split, by)
        if not self._has(es.total):
            return self.example_cumsum_upto(self.n_rows - 1, sel, split=split, by=by)
        return np.asarray(self._read_sel(es.total, (), sel, 0), np.float64)

    def example_cumsum_upto(self, r: int, sel=None, *, split: str = "train",
                            by: str = "layer") -> np.ndarray:
        """Σ of ``lca_example`` rows 0..r inclusive, (N_e, L) float64: one
        ``lca_example_cumsum_rows`` row (float32 of the exact running sum) plus at most
        ``every − 1`` rows; r = −1 gives zeros."""
        es, R = self._set(split, by), self.n_rows
        if not -1 <= r < R:
            raise IndexError(f"row {r} out of range (R = {R})")
        if self._has(es.cum_rows):
            every = max(1, int(self._dataset(es.cum_rows).attrs.get("every", 1)))
            k = min((r + 1) // every, self._dataset(es.cum_rows).shape[0], R // every)
        else:  # a bundle without running totals: add the rows
            every, k = 1, 0
        n_all, tail = self._dataset(es.rows).shape[1:]
        n = n_all if sel is None else len(np.arange(n_all)[sel])
        total = np.zeros((n, tail), np.float64)
        if k:
            total += self._read_sel(es.cum_rows, (slice(k - 1, k),), sel, 1)[0]
        if r + 1 > k * every:
            total += _decode(self._read_sel(es.rows, (slice(k * every, r + 1),), sel, 1)
                             ).sum(0)
        return total

    def example_loss(self, rows=None, sel=None, *, split: str = "train") -> np.ndarray | None:
        """ℓ_n at the θ that starts each row window, (R', N_e) float64 (NaN where the run did
        not evaluate it), or None without ``loss_example``."""
        es = self._set(split)
        if not self._has(es.loss_rows):
            return None
        off, key = self._rows_key(rows)
        block = self._read_sel(es.loss_rows, (key,), sel, 1)
        return np.asarray(_pick(block, off), np.float64)

    def example_loss_last(self, sel=None, *, split: str = "train") -> np.ndarray | None:
        """ℓ_n after the last iteration written (as of the last flush), (N_e,) float64, or
        None without ``loss_example_last``."""
        es = self._set(split)
        if not self._has(es.loss_last):
            return None
        return np.asarray(self._read_sel(es.loss_last, (), sel, 0), np.float64)

    def example_thumbnails(self, sel=None, *, split: str = "train") -> np.ndarray | None:
        """uint8 images (N', H, W) or (N', H, W, 3) of the tracked examples, or None."""
        name = f"{self._set(split).meta}/thumbnail"
        if not self._has(name):
            return None
        return np.asarray(self._read_sel(name, (), sel, 0), np.uint8)

    def example_texts(self, sel=None, *, split: str = "train") -> list[str] | None:
        """The text of each tracked example (e.g. ``"3 + 5 ≡ 8 (mod 97)"``), or None. Strings
        come from the file: escape them before showing them."""
        name = f"{self._set(split).meta}/text"
        if not self._has(name):
            return None
        raw = self._read_sel(name, (), sel, 0)
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
