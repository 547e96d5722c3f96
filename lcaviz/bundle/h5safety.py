"""The reader's defences against hostile and damaged files (a bundle from someone else).

* :func:`open_h5` opens with a bounded number of metadata read attempts: an HDF5 SWMR reader
  retries each failed metadata read 100 times with doubling sleeps, and h5py holds its global
  lock meanwhile, so one damaged live-flagged file froze every request of the dashboard.
* :func:`check_links` refuses anything that points outside the file: external links, external
  storage (raw data in another file, e.g. ``/etc/passwd``) and virtual datasets; and bounds the
  number of objects walked.
* :func:`check_extent` compares what a dataset must hold (``progress``) with what the file can
  hold: declared bytes beyond the file's size (or gzip's best ratio of it) are refused before
  anything is read, and rows past the end of the file or never written (a killed writer, a
  copy cut short) raise :class:`TruncatedBundleError` instead of reading as zeros.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle.errors import (
    _H5_ERRORS,
    CorruptBundleError,
    RefusedBundleError,
    TruncatedBundleError,
)

READ_ATTEMPTS = 16  # SWMR metadata read attempts (HDF5's default 100 sleeps for minutes)
MAX_OBJECTS = 4096  # links walked at most; a bundle has a few dozen
COMPRESSION_LIMIT = 1100  # gzip's best ratio is about 1032:1; more than that is a lie
MAX_CHUNK_PROBES = 1024  # chunk-index look-ups per dataset when checking the last rows


def _hdf5_library() -> ctypes.CDLL | None:
    """The libhdf5 that h5py has loaded (never another copy: property lists are per library)."""
    candidates = []
    try:
        with open("/proc/self/maps") as fh:
            candidates = sorted({line.split()[-1] for line in fh if "libhdf5" in line
                                 and "libhdf5_hl" not in line and "/" in line})
    except OSError:
        pkg = Path(h5py.__file__).parent
        candidates = sorted(glob.glob(str(pkg.parent / "h5py.libs" / "libhdf5-*"))
                            + glob.glob(str(pkg / ".dylibs" / "libhdf5.*")))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            fn = lib.H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
        return lib
    return None


_LIB = _hdf5_library()


def bounded_attempts() -> bool:
    """Whether metadata read attempts can be bounded here (else live files are probed in a
    subprocess first, see :mod:`lcaviz.bundle.h5open`)."""
    return _LIB is not None


def open_h5(path: Path, swmr: bool, rdcc_nbytes: int, rdcc_nslots: int) -> h5py.File:
    """``h5py.File(path, "r")``, file locking off, SWMR read if ``swmr``, and at most
    :data:`READ_ATTEMPTS` attempts per metadata read."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_WEAK)  # as h5py.File's own opens
    settings = list(fapl.get_cache())
    settings[1], settings[2] = rdcc_nslots, rdcc_nbytes
    fapl.set_cache(*settings)
    fapl.set_file_locking(False, True)
    if _LIB is not None and swmr:
        _LIB.H5Pset_metadata_read_attempts(fapl.id, READ_ATTEMPTS)
    flags = h5py.h5f.ACC_RDONLY | (h5py.h5f.ACC_SWMR_READ if swmr else 0)
    fid = h5py.h5f.open(os.fsencode(path), flags, fapl=fapl)
    return h5py.File(fid)


def check_links(f: h5py.File, path: Path, label: str) -> dict[str, h5py.h5d.DatasetID]:
    """Refuse a file with any link, dataset or storage that reaches outside it.

    Returns:
        Every dataset of the file by path, as low-level ids (cheap to query).

    Raises:
        RefusedBundleError: an external link, a user-defined link, a dataset with external
            storage or a virtual dataset (naming the first one), or over :data:`MAX_OBJECTS`
            links.
    """
    found: list[str] = []
    datasets: dict[str, h5py.h5d.DatasetID] = {}
    count = 0

    def visit(name: str, link) -> bool | None:
        nonlocal count
        count += 1
        if count > MAX_OBJECTS:
            found.append(f"more than {MAX_OBJECTS} objects")
            return True
        if isinstance(link, h5py.ExternalLink):
            found.append(f"{name!r} is an external link to another file")
        elif isinstance(link, h5py.SoftLink):
            return None  # stays in this file: every external link is refused anyway
        elif not isinstance(link, h5py.HardLink):
            found.append(f"{name!r} is a user-defined link")
        else:
            try:  # an exception must not escape into HDF5's visit (h5py turns it into a crash)
                obj = h5py.h5o.open(f.id, name.encode())  # low level: 10x faster than f[name]
                if isinstance(obj, h5py.h5d.DatasetID):
                    datasets[name] = obj
                    dcpl = obj.get_create_plist()
                    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
                        found.append(f"{name!r} is a virtual dataset (it maps other files)")
                    elif dcpl.get_external_count():
                        found.append(f"{name!r} stores its data in an external file")
            except _H5_ERRORS as e:
                damaged.append(f"{name!r} cannot be read ({e})")
        return True if found or damaged else None

    damaged: list[str] = []
    f.visititems_links(visit)
    if damaged:
        raise CorruptBundleError(f"{label}: damaged bundle: {damaged[0]}")
    if found:
        raise RefusedBundleError(f"{label}: refused: {found[0]}; a bundle must be one "
                                 "self-contained file")
    return datasets


def check_extent(ds: h5py.h5d.DatasetID, name: str, need: int, label: str, file_size: int, *,
                 written: bool = True) -> None:
    """Check that the first ``need`` entries (along axis 0) of ``ds`` are really in the file
    (only their size when not ``written``: counters a run fills in when it ends);
    ``file_size`` is measured after ``progress`` was read (a live run's file grows).

    Raises:
        RefusedBundleError: they would take more bytes than the file could hold even at gzip's
            best ratio (a tiny file declaring gigabytes).
        TruncatedBundleError: they lie past the end of the file, or were never written.
    """
    if need <= 0 or not ds.shape:
        return
    ndim = len(ds.shape)
    region = need * ds.dtype.itemsize * math.prod(ds.shape[1:])
    dcpl = ds.get_create_plist()
    layout = dcpl.get_layout()
    filtered = layout == h5py.h5d.CHUNKED and dcpl.get_nfilters() > 0
    ratio = COMPRESSION_LIMIT if filtered or not written else 1  # unwritten: only bounded
    if region > file_size * ratio + 4096:
        raise RefusedBundleError(
            f"{label}: refused: {name} declares {need:,} entries of shape {ds.shape[1:]} "
            f"({region:,} bytes) but the file has {file_size:,} bytes")
    if not written:
        return
    cut = (f"{label}: truncated bundle: progress promises {need:,} entries of {name}, but "
           "{what} (a writer killed mid-run or a copy cut short); these would read as zeros")
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.get_offset()
        if offset is None:
            raise TruncatedBundleError(cut.format(what="they were never written"))
        if offset + region > file_size:
            raise TruncatedBundleError(cut.format(what="they lie past the end of the file"))
    elif layout == h5py.h5d.CHUNKED:
        chunk = dcpl.get_chunk()
        row = (need - 1) // chunk[0] * chunk[0]
        starts = range(0, ds.shape[1], chunk[1]) if ndim >= 2 else [None]
        if len(starts) > MAX_CHUNK_PROBES:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, MAX_CHUNK_PROBES,
                                                       dtype=np.int64)]
        for c in starts:
            coord = (row,) if c is None else (row, c, *([0] * (ndim - 2)))
            info = ds.get_chunk_info_by_coord(coord)
            if info.byte_offset is None:  # a writer flushes rows before the progress naming them
                raise TruncatedBundleError(cut.format(what="they were never written"))
            if info.byte_offset + info.size > file_size:
                raise TruncatedBundleError(cut.format(what="they lie past the end of the file"))


_NUMERIC = ("progress", "params/shapes", "params/offsets", "params/layer", "params/layer_sizes",
            "lca", "lca_cumsum", "lca_val", "lca_rows", "lca_columns", "trajectory",
            "loss/train", "loss/val", "loss/minibatch", "accuracy/train", "accuracy/val",
            "lca_residual", "splits", "lca_layer", "lca_class_layer", "lca_val_layer",
            "help_count", "hurt_count", "timing/seconds", "param_help_iters",
            "param_nonzero_iters", "lca_group", "lca_val_group")


def table_problems(datasets: dict[str, h5py.h5d.DatasetID], n: int, L: int,
                   shapes: np.ndarray, offsets: np.ndarray) -> list[str]:
    """What is wrong with the parameter table and the datasets' types (clear messages, where
    the views would otherwise fail deep inside numpy)."""
    problems = []
    if L == 0 or n == 0:
        problems.append(f"the bundle has {L} layers and {n} parameter tensors; there is "
                        "nothing to show")
    problems += [f"{name} holds {datasets[name].dtype} values, not numbers" for name in _NUMERIC
                 if name in datasets and datasets[name].dtype.kind not in "biuf"]
    if shapes.ndim != 2 or shapes.shape[0] != n:
        problems.append(f"params/shapes has shape {shapes.shape}, expected ({n}, 4)")
    elif offsets.shape == (n + 1,) and shapes.dtype.kind in "iu":
        sizes = [math.prod(int(d) for d in s if d >= 0) for s in shapes]
        bad = [k for k, (a, b) in enumerate(zip(sizes, np.diff(offsets), strict=True)) if a != b]
        if bad:
            problems.append(f"params/shapes of tensor {bad[0]} ({shapes[bad[0]].tolist()}) "
                            "does not match its size in params/offsets")
    return problems


PROBING = False  # True in the probe's child process: it opens the file the plain way
_PROBE = ("import sys\n"
          "sys.path.insert(0, sys.argv[2])\n"
          "from lcaviz.bundle import RunBundle, h5safety\n"
          "h5safety._LIB, h5safety.PROBING = None, True\n"
          "try:\n"
          "    RunBundle.open(sys.argv[1]).close()\n"
          "except Exception:\n"
          "    pass  # a quick failure repeats quickly in the caller: only a hang matters\n")


def probe_live(path: Path, timeout: float = 20.0) -> None:
    """Where read attempts cannot be bounded: open a live-flagged file in a subprocess first,
    so that a damaged one costs ``timeout`` seconds of a child process, not the server.

    Raises:
        CorruptBundleError: the child did not finish in time.
    """
    import subprocess
    import sys

    try:
        root = str(Path(__file__).resolve().parents[2])
        subprocess.run([sys.executable, "-c", _PROBE, str(path), root], capture_output=True,
                       timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise CorruptBundleError(f"{path}: damaged bundle: opening it took over {timeout:g} s "
                                 "(a damaged file that a writer never closed)") from e
