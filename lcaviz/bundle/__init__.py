"""Read LCA run bundles (docs/bundle-format.md), lazily and safely, with h5py only.

``RunBundle`` never reads the whole (R, P) matrix unless asked: rows, layer windows, parameter
curves and cumulative sums are read as slices, and :meth:`RunBundle.iter_row_blocks` streams
the matrix in blocks of bounded size. Every failure to read a file is turned into a
:class:`BundleError` subclass whose message names the file and what is wrong.

Liveness: the file is opened with ``swmr=True`` only while its superblock says a writer has it
open (``RunBundle.live``); a closed file is opened normally. An HDF5 SWMR reader retries every
failed metadata read about 100 times with growing sleeps, so a damaged live-flagged file would
hang for minutes: live files are opened with a bounded number of attempts
(:mod:`~lcaviz.bundle.h5safety`, which also refuses links and storage outside the file and
declared sizes the file cannot hold). Always ``locking=False``.

Modules: :mod:`~lcaviz.bundle.errors` (typed errors, ``read_guard``),
:mod:`~lcaviz.bundle.h5open` (opening, SWMR flags, header validation),
:mod:`~lcaviz.bundle.h5safety` (defences against hostile and damaged files),
:mod:`~lcaviz.bundle.meta` (metadata and column layout), :mod:`~lcaviz.bundle.blocks`
(column-selection reads), :mod:`~lcaviz.bundle.examples` (per-example LCA, format version 3),
:mod:`~lcaviz.bundle.reader` (``RunBundle``) and
:mod:`~lcaviz.bundle.scan` (``RunInfo``, ``scan_runs``). Import from ``lcaviz.bundle``.
"""

from __future__ import annotations

from lcaviz.bundle.blocks import BLOCK_BYTES
from lcaviz.bundle.blocks import _n_cols as _n_cols
from lcaviz.bundle.blocks import _read_block as _read_block
from lcaviz.bundle.errors import _H5_ERRORS as _H5_ERRORS
from lcaviz.bundle.errors import (
    BundleError,
    BundleNotFoundError,
    CorruptBundleError,
    MissingExamplesError,
    MissingRowsError,
    NotABundleError,
    UnsupportedVersionError,
)
from lcaviz.bundle.errors import read_guard as read_guard
from lcaviz.bundle.h5open import _HDF5_SIGNATURE as _HDF5_SIGNATURE
from lcaviz.bundle.h5open import _REQUIRED as _REQUIRED
from lcaviz.bundle.h5open import CHUNK_CACHE_BYTES as CHUNK_CACHE_BYTES
from lcaviz.bundle.h5open import _text as _text
from lcaviz.bundle.h5open import superblock_flags as superblock_flags
from lcaviz.bundle.reader import RunBundle
from lcaviz.bundle.scan import RunInfo, scan_runs
from lcaviz.bundle.schema import FORMAT as FORMAT
from lcaviz.bundle.schema import FORMAT_VERSION as FORMAT_VERSION
from lcaviz.bundle.schema import RowSchedule as RowSchedule

__all__ = [
    "BLOCK_BYTES", "BundleError", "BundleNotFoundError", "CorruptBundleError",
    "MissingExamplesError", "MissingRowsError", "NotABundleError", "RowSchedule", "RunBundle",
    "RunInfo", "UnsupportedVersionError", "scan_runs",
]
