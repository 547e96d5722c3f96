"""Opening and validating a bundle file: HDF5 signature and superblock flags, SWMR only while
a writer has the file open, header attributes and cross-checked dataset shapes.

An HDF5 SWMR reader retries every failed metadata read about 100 times with growing sleeps,
so a truncated or damaged file opened with SWMR would hang for minutes instead of failing at
once; a closed file is therefore opened normally. Always ``locking=False``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle import counterfactual, h5safety
from lcaviz.bundle import examples as ex
from lcaviz.bundle.errors import (
    _H5_ERRORS,
    BundleNotFoundError,
    CorruptBundleError,
    NotABundleError,
    UnsupportedVersionError,
    read_guard,
)
from lcaviz.bundle.groups import read_groups
from lcaviz.bundle.schema import FORMAT, FORMAT_VERSION, READABLE_VERSIONS, ROW_SOURCES

# HDF5 chunk cache per open dataset: a frame request reads its rows in one call, which reads
# each chunk once whatever the cache; 8 MiB keeps 4 open bundles' caches to 128 MiB at most
CHUNK_CACHE_BYTES = 8 * 2**20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# version 2: what any producer must write (docs/bundle-format.md, "A bundle of your own");
# the reader derives or defaults the rest (lcaviz.bundle.derived)
CORE = ("progress", "params/names", "params/shapes", "params/offsets", "params/layer",
        "params/layer_names", "lca", "lca_rows", "loss/train")
# version 1 was only ever written by lca-run, which wrote all of these
_REQUIRED = (
    "progress", "params/names", "params/shapes", "params/offsets", "params/layer",
    "params/module_type", "params/layer_names", "params/layer_sizes", "classes/names", "lca",
    "lca_cumsum", "loss/train", "loss/minibatch", "accuracy/train", "lca_residual", "splits",
    "lca_layer", "help_count", "hurt_count", "param_help_iters", "param_nonzero_iters",
    "timing/seconds",
)


def superblock_flags(path: Path) -> int | None:
    """File-consistency flags of an HDF5 file, or None if it is not HDF5.

    The signature may sit at 0, 512, 1024, ... (user block). Superblocks of version ≥ 2 (all
    files written with ``libver="latest"``) keep the flags at byte 11: bit 0 "open for
    writing", bit 2 "open for SWMR writing"; older superblocks report 0.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            offset = 0
            while offset + 12 <= size:
                fh.seek(offset)
                head = fh.read(12)
                if head[:8] == _HDF5_SIGNATURE:
                    return head[11] if head[8] >= 2 else 0
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return None
    return None


_T_SERIES = ("loss/minibatch", "lca_residual", "splits", "lca_layer", "help_count",
             "hurt_count", "timing/seconds", "lca_class_layer", "lca_val_layer", "lca_group",
             "lca_val_group")
_T1_SERIES = ("loss/train", "accuracy/train", "loss/val", "trajectory")


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class _BundleFile:
    """Opening and header validation of :class:`~lcaviz.bundle.RunBundle` (a mixin: the
    reader provides ``path``, ``_f``, ``_ds`` and ``close``)."""

    # -- opening and validation -----------------------------------------------------------------
    def _load(self) -> None:
        p = self.path
        if not p.exists():
            raise BundleNotFoundError(f"{p}: no such file")
        if not p.is_file():
            raise NotABundleError(f"{p}: not a file")
        self._f = self._open_h5(p)
        try:
            with read_guard(p, "reading the bundle header"):
                self._read_header()
        except BaseException:
            self.close()
            raise

    def _open_h5(self, p: Path, attempts: int = 3) -> h5py.File:
        """Open with SWMR only while a writer has the file open.

        A SWMR reader retries every failed metadata read (checksum, truncation) about 100
        times with growing sleeps, so a damaged file would hang it for minutes; a closed file
        opened normally fails at once with a clear error, and a live one is opened with few
        read attempts (:func:`lcaviz.bundle.h5safety.open_h5`). A writer switching between
        SWMR and plain write mode (to set ``status``) is retried briefly.
        """
        for attempt in range(attempts):
            flags = superblock_flags(p)
            if flags is None:
                raise NotABundleError(f"{p}: not an HDF5 file (no HDF5 signature)")
            self.live = bool(flags & 0b101)
            try:
                if self.live and not (h5safety.bounded_attempts() or h5safety.PROBING):
                    h5safety.probe_live(p)
                return h5safety.open_h5(p, self.live, CHUNK_CACHE_BYTES, 10007)
            except _H5_ERRORS as e:
                if not self.live or attempt == attempts - 1:
                    raise CorruptBundleError(f"{p}: HDF5 file cannot be opened ({e})") from e
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _read_header(self) -> None:
        f, p = self._f, self.path
        self._h5_datasets = h5safety.check_links(f, p, str(p))  # before any read through links
        a = f.attrs
        if "format" not in a:
            raise NotABundleError(f"{p}: HDF5 file without a 'format' attribute: not an "
                                  "lca-bundle")
        if _text(a["format"]) != FORMAT:
            raise NotABundleError(f"{p}: format is {_text(a['format'])!r}, not {FORMAT!r}")
        version = int(a.get("format_version", -1))
        if version not in READABLE_VERSIONS:
            raise UnsupportedVersionError(
                f"{p}: lca-bundle format_version {version} is not supported (this reader "
                f"reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
                + ("upgrade lca-explorer" if version > FORMAT_VERSION else "re-run it"))
        self.format_version = version
        required = CORE if version >= 2 else _REQUIRED
        missing = [name for name in required if name not in f]
        if missing:
            raise CorruptBundleError(f"{p}: required datasets missing: {', '.join(missing)}")
        self._attrs = {k: _text(v) if isinstance(v, (bytes, str)) else v for k, v in a.items()}
        try:
            self.config: dict = json.loads(self._attrs.get("config", "{}"))
            self.software: dict = json.loads(self._attrs.get("software", "{}"))
        except (json.JSONDecodeError, TypeError) as e:
            raise CorruptBundleError(f"{p}: config/software attribute is not JSON ({e})") from e
        for what, value in (("config", self.config), ("software", self.software)):
            if not isinstance(value, dict):
                raise CorruptBundleError(f"{p}: the {what} attribute is {type(value).__name__} "
                                         f"JSON ({str(value)[:40]}), not an object")
        g = f["params"]
        self._names = [_text(s) for s in g["names"][()]]
        self._shapes = g["shapes"][()]  # (n, 4)
        self._offsets = g["offsets"][()].astype(np.int64)  # (n + 1,)
        self._tensor_layer = g["layer"][()].astype(np.int64)  # (n,)
        self._module_type = ([_text(s) for s in g["module_type"][()]] if "module_type" in g
                             else [""] * len(self._names))
        self.layer_names: list[str] = [_text(s) for s in g["layer_names"][()]]
        if "layer_sizes" in g:
            self.layer_sizes: np.ndarray = g["layer_sizes"][()].astype(np.int64)  # (L,)
        else:  # derived: the sizes of the tensors of each layer
            self.layer_sizes = np.zeros(len(self.layer_names), np.int64)
            np.add.at(self.layer_sizes, self._tensor_layer, np.diff(self._offsets))
        self.class_names: list[str] = ([_text(s) for s in f["classes/names"][()]]
                                       if "classes/names" in f else [])
        self.n_iters, self.n_rows = (int(v) for v in f["progress"][()])
        self._columns_cache: dict[int, slice | np.ndarray] = {}
        self._check_layout()
        self._read_rows_layout()

    def _shared(self) -> bool:
        """Whether another handle in this process has this file open.

        Such a handle shares our view of the file, cached shapes included, which can be older
        than ``progress``: the writer may have appended since, and even finished (so the file
        no longer looks live).
        """
        return h5py.h5f.get_obj_count(self._f.id, h5py.h5f.OBJ_FILE) > 1

    def _clamp_live(self, T: int, R: int) -> tuple[int, int]:
        """Progress of a live run, limited to what this handle's datasets show.

        HDF5 shares one open file (and its cached dataset shapes) among all opens of a path in
        a process, so a second handle on a live run can read a newer ``progress`` than the
        shapes it sees. The rows it sees are complete, so we show that (slightly older) prefix.
        """
        f = self._f
        per_t = [f[n].shape[0] for n in _T_SERIES if n in f]
        per_t1 = [f[n].shape[0] - 1 for n in _T1_SERIES if n in f]
        rows = [f[n].shape[0] for n in (*ROW_SOURCES, "lca_rows", *ex.ROW_DATASETS)
                if n in f]
        T = min([T, *per_t, *per_t1])
        R = min([R, *rows])
        if self.format_version >= 2:
            ends = f["lca_rows"][:R, 1]
            R = int(np.searchsorted(ends, T, side="right"))  # rows complete within T
        else:
            S = max(1, int(self._attrs.get("lca_stride", 1)))
            R = min(R, -(-T // S))
            T = min(T, R * S + S - 1)
        self.n_iters, self.n_rows = T, R
        return T, R

    def _check_layout(self) -> None:
        """Cross-check shapes; any inconsistency means a damaged or half-written file."""
        f, p = self._f, self.path
        n, L, T, R = len(self._names), len(self.layer_names), self.n_iters, self.n_rows
        problems = []
        if self._offsets.shape != (n + 1,) or self._offsets[0] != 0 or np.any(
                np.diff(self._offsets) < 0):
            problems.append(f"params/offsets {self._offsets.shape} is not n + 1 = {n + 1} "
                            "increasing offsets from 0")
        for name, length in (("params/shapes", n), ("params/layer", n),
                             ("params/module_type", n), ("params/layer_sizes", L)):
            if name in f and f[name].shape[0] != length:
                problems.append(f"{name} has {f[name].shape[0]} entries, expected {length}")
        if n and (self._tensor_layer.min() < 0 or self._tensor_layer.max() >= L):
            problems.append("params/layer refers to layers that do not exist")
        problems += h5safety.table_problems(self._h5_datasets, n, L, self._shapes,
                                            self._offsets)
        P = int(self._offsets[-1]) if len(self._offsets) else 0
        ranges = self._row_ranges(P, problems)
        P_rows = int((ranges[:, 1] - ranges[:, 0]).sum())
        for name in ("lca", "lca_cumsum", "lca_val"):
            if name in f and (f[name].ndim != 2 or f[name].shape[1] != P_rows):
                problems.append(f"{name} has shape {f[name].shape}, expected (*, {P_rows}) "
                                "(the columns of lca_columns)")
        if "trajectory" in f and (f["trajectory"].ndim != 2 or f["trajectory"].shape[1] != P):
            problems.append(f"trajectory has shape {f['trajectory'].shape}, expected (*, {P})")
        if int(self._attrs.get("n_classes", len(self.class_names))) != len(self.class_names):
            problems.append("n_classes attribute disagrees with classes/names")
        S = int(self._attrs.get("lca_stride", 1))
        if S < 1:
            problems.append(f"lca_stride {S} is not positive")
        elif self.live or self._shared():
            T, R = self._clamp_live(T, R)
        if self.format_version < 2 and S >= 1 and (T < 0 or not T // S <= R <= -(-T // S)):
            problems.append(f"progress [T={T}, R={R}] is impossible for stride {S}")
        lengths = {"lca": R, "lca_rows": R, "loss/train": T + 1, "accuracy/train": T + 1,
                   "loss/minibatch": T, "lca_residual": T, "splits": T, "lca_layer": T,
                   "help_count": T, "hurt_count": T, "timing/seconds": T,
                   "lca_class_layer": T, "loss/val": T + 1, "lca_val": R, "lca_val_layer": T,
                   "trajectory": T + 1, "lca_group": T, "lca_val_group": T}
        example_problems = ex.problems(f, L)
        problems += example_problems
        if not example_problems:  # per-example rows follow the same windows (R)
            lengths |= ex.extents(f, R)
        for name, need in lengths.items():
            if name in f and f[name].shape[0] < need:
                problems.append(f"progress says {need} entries of {name} but it has "
                                f"{f[name].shape[0]}")
        for name, tail in (("lca_layer", (L,)), ("help_count", (L,)), ("hurt_count", (L,)),
                           ("lca_class_layer", (len(self.class_names), L))):
            if name in f and f[name].shape[1:] != tail:
                problems.append(f"{name} has shape {f[name].shape}, expected (T, *{tail})")
        problems += counterfactual.problems(f)
        if "params/groups" in f:
            G = len(f["params/groups/names"])
            problems += read_groups(f["params"], L, P)[3]
            problems += [f"{n} has shape {f[n].shape}, expected (T, {G}) (one per group)"
                         for n in ("lca_group", "lca_val_group") if n in f
                         and f[n].shape[1:] != (G,)]
        for name in ("param_help_iters", "param_nonzero_iters"):
            if name in f and f[name].shape != (P,):
                problems.append(f"{name} has shape {f[name].shape}, expected ({P},)")
        if problems:
            raise CorruptBundleError(f"{p}: inconsistent bundle: " + "; ".join(problems))
        every = int(f["lca_cumsum"].attrs.get("every", 1)) if "lca_cumsum" in f else 1
        lengths |= {"lca_cumsum": R // max(every, 1), "params/shapes": n, "params/offsets": n + 1,
                    "params/layer": n, "params/names": n, "params/layer_names": L,
                    "lca_columns": len(self._ranges), "progress": 2}
        counters = {"param_help_iters": P, "param_nonzero_iters": P}  # filled at the end
        size = os.path.getsize(p)  # after progress was read: what it names is on disk
        for name, need in (lengths | counters).items():
            ds = self._h5_datasets.get(name)
            if ds is not None:
                h5safety.check_extent(ds, name, need, str(p), size, written=name not in counters)
        self._h5_datasets = {}  # low-level ids: none may outlive the file's close

    def _row_ranges(self, P: int, problems: list[str]) -> np.ndarray:
        """(K, 2) parameter ranges with per-parameter rows (version 1: all of them)."""
        f = self._f
        if "lca_columns" not in f:
            ranges = np.array([[0, P]], np.int64)
        else:
            ranges = f["lca_columns"][()].astype(np.int64).reshape(-1, 2)
            ok = (np.all(ranges[:, 0] < ranges[:, 1]) and np.all(ranges[1:, 0] >= ranges[:-1, 1])
                  and (len(ranges) == 0 or (ranges[0, 0] >= 0 and ranges[-1, 1] <= P)))
            if not ok:
                problems.append("lca_columns is not a sorted list of disjoint [start, end) "
                                f"ranges within 0..{P}")
            elif not np.all(np.isin(ranges, self._offsets)):
                problems.append(f"lca_columns {ranges.tolist()} do not fall on tensor "
                                f"boundaries (params/offsets, P = {P})")
        self._ranges = ranges
        return ranges

    def _read_rows_layout(self) -> None:
        """Each row's [first, end) iterations (version 1: windows of ``lca_stride``)."""
        T, R = self.n_iters, self.n_rows
        if self.format_version >= 2:
            with read_guard(self.path, "reading 'lca_rows'"):
                w = self._f["lca_rows"][:R].astype(np.int64).reshape(-1, 2)
            bad = R and (w[0, 0] != 0 or np.any(w[:, 1] <= w[:, 0])
                         or np.any(w[1:, 0] != w[:-1, 1]) or w[-1, 1] > T)
            if bad:
                raise CorruptBundleError(f"{self.path}: inconsistent bundle: lca_rows are not "
                                         f"consecutive [first, end) windows within {T} "
                                         "iterations")
        else:
            S = max(1, int(self._attrs.get("lca_stride", 1)))
            starts = np.arange(R, dtype=np.int64) * S
            w = np.stack([starts, np.minimum(starts + S, T)], axis=1).reshape(-1, 2)
        self._windows = w
