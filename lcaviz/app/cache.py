"""Bounded caches: open bundles and computed arrays/figures.

Memory must not grow with bundle size or with how long the dashboard runs, so every cache
here has a hard bound (entries and, for arrays, bytes). Keys always include the bundle's
path and modification stamp so that a bundle still being written is never served stale.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def file_stamp(path: str | Path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file: changes whenever a writer flushes."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def nbytes(value: Any) -> int:
    """Approximate memory held by a cached value: arrays, data frames, Plotly figures,
    dataclasses (a finished job's status and result) and tuples/lists/dicts of them."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value) + 64
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values()) + 64
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value)) + 64
    if hasattr(value, "to_plotly_json"):  # a figure: its arrays live in the trace dicts
        return nbytes(value.to_plotly_json())
    return sys.getsizeof(value)  # pandas counts its own buffers here


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
    """At most ``max_open`` open :class:`~lcaviz.bundle.RunBundle` objects, LRU, and never two
    handles on one path at a time.

    HDF5 shares one open file (with its cached metadata) among every open of a path in a
    process, so a second handle on a live run would see the first one's stale dataset shapes:
    the run would freeze, and once complete be called inconsistent. So each path has one bundle
    object, refreshed **in place** when its file stamp changes (a live run flushed, or its
    writer closed it): it closes its file before reopening, under its own lock, so a callback
    reading it meanwhile finishes first. Readers that only look (the runs list) borrow the
    cached object, or a temporary handle held under the same per-path lock. A refresh that
    fails (a damaged file) drops the entry and raises; the next call opens the path afresh.
    """

    def __init__(self, max_open: int = 8, opener: Callable[[Path], Any] | None = None):
        self.max_open = max_open
        self._opener = opener
        self._d: OrderedDict[Path, list] = OrderedDict()  # path -> [stamp, bundle]
        self._lock = threading.Lock()
        self._path_locks: dict[Path, threading.Lock] = {}

    def _open(self, path: Path) -> Any:
        if self._opener is not None:
            return self._opener(path)
        from lcaviz.bundle import RunBundle

        return RunBundle.open(path)

    def _path_lock(self, path: Path) -> threading.Lock:
        with self._lock:
            return self._path_locks.setdefault(path, threading.Lock())

    def get(self, path: str | Path) -> tuple[Any, tuple[int, int]]:
        """The open bundle at ``path`` (kept open) and the file stamp it reflects."""
        path = Path(path)
        with self._path_lock(path):
            stamp = file_stamp(path)
            with self._lock:
                hit = self._d.get(path)
                if hit is not None:
                    self._d.move_to_end(path)
            if hit is None:
                hit = [stamp, self._open(path)]
                with self._lock:
                    self._d[path] = hit
                    self._evict()
            elif hit[0] != stamp:
                try:
                    hit[1].refresh()
                except Exception:
                    with self._lock:
                        if self._d.get(path) is hit:
                            del self._d[path]
                    raise
                hit[0] = stamp
            return hit[1], stamp

    @contextmanager
    def borrow(self, path: str | Path) -> Iterator[Any]:
        """The cached bundle of ``path`` if there is one (refreshed), else a temporary handle
        that is closed afterwards; either way no other handle on the path is open meanwhile."""
        path = Path(path)
        with self._lock:
            cached = path in self._d
        if cached:
            yield self.get(path)[0]
            return
        with self._path_lock(path):
            bundle = self._open(path)
            try:
                yield bundle
            finally:
                _close(bundle)

    def _evict(self) -> None:
        while len(self._d) > self.max_open:
            _, (_, bundle) = self._d.popitem(last=False)
            _close(bundle)

    def __len__(self) -> int:
        return len(self._d)


def _close(bundle: Any) -> None:
    close = getattr(bundle, "close", None)
    if close is not None:
        close()
