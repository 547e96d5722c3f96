"""Server-side state of one dashboard app: the runs directory and its bounded caches.

Everything the browser sends is untrusted; the runs directory lives only here, and run ids
from URLs go through :func:`lcaviz.app.security.resolve_run` before any file is touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcaviz.app.cache import LRU, BundleCache, file_stamp
from lcaviz.app.jobs import JobRunner
from lcaviz.app.security import resolve_run, run_id_of
from lcaviz.bundle.errors import BundleError


@dataclass
class AppState:
    """Shared by all callbacks of one app (thread-safe pieces only)."""

    runs_dir: Path
    # Bounds chosen so that the server stays well under 500 MB whatever the bundle size: a
    # frame of a 1 M-parameter layer is 4-8 MB, each open bundle holds h5py chunk caches.
    bundles: BundleCache = field(default_factory=lambda: BundleCache(max_open=4))
    arrays: LRU = field(default_factory=lambda: LRU(max_entries=256, max_bytes=96 * 2**20))
    jobs: JobRunner = field(default_factory=lambda: JobRunner(max_workers=2))
    scan_cache: dict = field(default_factory=dict)

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
        bundle handles so that a live run shown on a page is never opened twice."""
        from lcaviz.bundle import scan_runs

        return scan_runs(self.runs_dir, borrow=self.bundles.borrow)

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
