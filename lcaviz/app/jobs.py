"""Long computations (Weibull fits, the random-shift test) off the request thread.

A small thread pool runs them; callbacks poll with a ``dcc.Interval`` and show progress, so
scrubbing the slider never waits for an analysis. Results are cached by key (which always
contains the bundle path, its file stamp and the settings) in a bounded LRU.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lcaviz.app.cache import LRU


def trim_heap() -> None:
    """Give freed memory back to the OS after a big job (glibc keeps it otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass
class JobStatus:
    """Snapshot of one job for a polling callback."""

    state: str  # "running", "done" or "error"
    result: Any = None
    error: str = ""
    elapsed: float = 0.0
    progress: float | None = None  # 0..1 when the job reports it


@dataclass
class _Job:
    future: Future
    started: float = field(default_factory=time.monotonic)
    progress: list = field(default_factory=lambda: [None])


class JobRunner:
    """Run keyed jobs once, in the background, and remember their results."""

    def __init__(self, max_workers: int = 2, max_results: int = 64,
                 max_result_bytes: int = 128 * 2**20):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lcaviz")
        self._jobs: dict[Hashable, _Job] = {}
        self._results = LRU(max_entries=max_results, max_bytes=max_result_bytes)
        self._lock = threading.Lock()

    def status(self, key: Hashable, fn: Callable[..., Any] | None = None, *args: Any,
               progress_kw: str | None = None, **kwargs: Any) -> JobStatus:
        """Status of job ``key``; starts ``fn(*args, **kwargs)`` if it is not known yet.

        Args:
            key: cache key (include path, file stamp and every setting).
            fn: the computation; None only polls.
            progress_kw: if given, ``fn`` receives a ``progress(fraction)`` callable under
                this keyword argument.
        """
        done = self._results.get(key)
        if done is not None:
            return done
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                if fn is None:
                    return JobStatus("error", error="unknown job")
                job = self._start(key, fn, args, kwargs, progress_kw)
        if not job.future.done():
            return JobStatus("running", elapsed=time.monotonic() - job.started,
                             progress=job.progress[0])
        return self._finish(key, job)

    def peek(self, key: Hashable) -> JobStatus | None:
        """Status of job ``key`` if it was ever started (never starts one)."""
        done = self._results.get(key)
        if done is not None:
            return done
        with self._lock:
            known = key in self._jobs
        return self.status(key) if known else None

    def _start(self, key, fn, args, kwargs, progress_kw) -> _Job:
        job = _Job(future=Future())
        if progress_kw:
            kwargs = {**kwargs, progress_kw: lambda f: job.progress.__setitem__(0, float(f))}
        job.future = self._pool.submit(fn, *args, **kwargs)
        self._jobs[key] = job
        return job

    def _finish(self, key: Hashable, job: _Job) -> JobStatus:
        elapsed = time.monotonic() - job.started
        exc = job.future.exception()
        if exc is not None:
            msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            st = JobStatus("error", error=msg, elapsed=elapsed)
        else:
            st = JobStatus("done", result=job.future.result(), elapsed=elapsed, progress=1.0)
        self._results.put(key, st)
        with self._lock:
            self._jobs.pop(key, None)
        trim_heap()
        return st

    def wait(self, key: Hashable, timeout: float = 60.0) -> JobStatus:
        """Block until job ``key`` ends (tests and benchmarks only)."""
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            job.future.exception(timeout=timeout)
        return self.status(key)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
