"""Bounded caches: open bundles and computed arrays/figures.

Memory must not grow with bundle size or with how long the dashboard runs, so every cache
here has a hard bound (entries and, for arrays, bytes). Keys always include the bundle's
path and modification stamp so that a bundle still being written is never served stale.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np


def file_stamp(path: str | Path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file: changes whenever a writer flushes."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def nbytes(value: Any) -> int:
    """Approximate memory held by a cached value (arrays, tuples/lists/dicts of them)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value) + 64
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values()) + 64
    return sys.getsizeof(value)


class LRU:
    """Thread-safe LRU cache bounded by entry count and total (approximate) bytes."""

    def __init__(self, max_entries: int = 128, max_bytes: int = 256 * 2**20):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._d: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key][0]
            self.misses += 1
            return default

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._d

    def put(self, key: Hashable, value: Any) -> None:
        size = nbytes(value)
        if size > self.max_bytes:  # never cache something that would evict everything
            return
        with self._lock:
            if key in self._d:
                self._bytes -= self._d.pop(key)[1]
            self._d[key] = (value, size)
            self._bytes += size
            while self._d and (len(self._d) > self.max_entries or self._bytes > self.max_bytes):
                _, (_, s) = self._d.popitem(last=False)
                self._bytes -= s

    def get_or_compute(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        """Cached value of ``key``, computing (outside the lock) and storing it on a miss."""
        sentinel = object()
        v = self.get(key, sentinel)
        if v is sentinel:
            v = fn()
            self.put(key, v)
        return v

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._d)


class BundleCache:
    """At most ``max_open`` open :class:`~lcaviz.bundle.RunBundle` objects, LRU.

    A bundle is reopened when its file stamp changes (a live run flushed, or the writer closed
    it and set the final status); dropped handles are closed by garbage collection once no
    callback still uses them, so a concurrent reader is never cut off mid-read.
    """

    def __init__(self, max_open: int = 8, opener: Callable[[Path], Any] | None = None):
        self.max_open = max_open
        self._opener = opener
        self._d: OrderedDict[Path, tuple[tuple[int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def _open(self, path: Path) -> Any:
        if self._opener is not None:
            return self._opener(path)
        from lcaviz.bundle import RunBundle

        return RunBundle.open(path)

    def get(self, path: str | Path) -> tuple[Any, tuple[int, int]]:
        """The open bundle at ``path`` and the file stamp it reflects."""
        path = Path(path)
        stamp = file_stamp(path)
        with self._lock:
            hit = self._d.get(path)
            if hit is not None and hit[0] == stamp:
                self._d.move_to_end(path)
                return hit[1], stamp
        bundle = self._open(path)  # outside the lock: opening can take a moment
        with self._lock:
            self._d[path] = (stamp, bundle)
            self._d.move_to_end(path)
            while len(self._d) > self.max_open:
                self._d.popitem(last=False)
        return bundle, stamp

    def __len__(self) -> int:
        return len(self._d)
