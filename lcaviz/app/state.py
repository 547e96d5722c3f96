"""Server-side state of one dashboard app: the runs directory and its bounded caches.

Everything the browser sends is untrusted; the runs directory lives only here, and run ids
from URLs go through :func:`lcaviz.app.security.resolve_run` before any file is touched.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcaviz.app.cache import LRU, BundleCache, file_stamp
from lcaviz.app.jobs import JobRunner
from lcaviz.app.security import resolve_run, run_id_of
from lcaviz.bundle.errors import BundleError
from lcaviz.bundle.h5open import CHUNK_CACHE_BYTES

OPEN_BUNDLES = 4  # open handles, each with HDF5 chunk caches
BIG_DATASETS = 4  # (rows, P) datasets a handle may open: lca, lca_cumsum, lca_val, trajectory
ARRAY_BYTES = 96 * 2**20  # computed arrays and tables
JOB_RESULT_BYTES = 64 * 2**20  # finished background jobs (value scans, fits, shift tests)
CACHE_BUDGET_BYTES = 300 * 2**20


def cache_budget() -> dict[str, int]:
    """The most each server cache may hold, in bytes (``total`` <= CACHE_BUDGET_BYTES)."""
    parts = {"open bundles (HDF5 chunk caches)":
             OPEN_BUNDLES * BIG_DATASETS * CHUNK_CACHE_BYTES,
             "arrays": ARRAY_BYTES, "job results": JOB_RESULT_BYTES}
    return {**parts, "total": sum(parts.values())}


@dataclass
class AppState:
    """Shared by all callbacks of one app (thread-safe pieces only)."""

    runs_dir: Path
    # Bounded to CACHE_BUDGET_BYTES in all (cache_budget() adds it up), so that the server
    # stays under 500 MB whatever the bundle sizes (measured: tests/reliability/memory.py)
    bundles: BundleCache = field(default_factory=lambda: BundleCache(max_open=OPEN_BUNDLES))
    arrays: LRU = field(default_factory=lambda: LRU(max_entries=256, max_bytes=ARRAY_BYTES))
    jobs: JobRunner = field(default_factory=lambda: JobRunner(
        max_workers=2, max_result_bytes=JOB_RESULT_BYTES))
    scan_cache: dict = field(default_factory=dict)
    _scan_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def open(self, run_id: str) -> tuple[Any, tuple]:
        """Open (cached) the bundle of an untrusted ``run_id``.

        Returns:
            ``(bundle, key)`` where ``key = (path, mtime_ns, size)`` identifies this version of
            the file for every cache.

        Raises:
            lcaviz.app.security.RunPathError: bad run id.
            lcaviz.bundle.BundleError: unreadable bundle.
        """
        path = resolve_run(self.runs_dir, run_id)
        try:
            bundle, stamp = self.bundles.get(path)
        except BundleError as e:  # the page names the run by its id, never a server path
            raise type(e)(self.redact(str(e))) from e
        return bundle, (str(path), *stamp)

    def redact(self, message: str) -> str:
        """``message`` with the runs directory's absolute path left out (run ids remain)."""
        for root in sorted({str(self.runs_dir), str(self.runs_dir.resolve())}, key=len,
                           reverse=True):
            message = message.replace(root.rstrip("/") + "/", "")
        return message

    def scan(self) -> list:
        """The runs table (:func:`lcaviz.bundle.scan_runs`), reading through the shared
        bundle handles so that a live run shown on a page is never opened twice. One scan at
        a time: tabs asking together wait and share it while no bundle has changed."""
        from lcaviz.bundle import scan_runs

        with self._scan_lock:
            stamp = self.dir_stamp()
            last = self.scan_cache.get("scan")
            if last is None or last[0] != stamp:
                last = (stamp, scan_runs(self.runs_dir, borrow=self.bundles.borrow))
                self.scan_cache["scan"] = last
            return list(last[1])

    def cached(self, key: tuple, fn) -> Any:
        """``fn()`` memoised in the bounded array cache."""
        return self.arrays.get_or_compute(key, fn)

    def run_id(self, path: str | Path) -> str:
        return run_id_of(self.runs_dir, path)

    def dir_stamp(self) -> tuple:
        """Cheap fingerprint of every ``.h5`` under the runs dir (names, mtimes, sizes)."""
        items = []
        for root, dirs, files in os.walk(self.runs_dir):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".h5", ".hdf5")):
                    p = os.path.join(root, name)
                    try:
                        items.append((p, *file_stamp(p)))
                    except OSError:
                        continue
        return tuple(items)
