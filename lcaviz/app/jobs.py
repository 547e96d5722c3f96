"""Long computations (Weibull fits, the random-shift test) off the request thread.

A small thread pool runs them; callbacks poll with a ``dcc.Interval`` and show progress, so
scrubbing the slider never waits for an analysis. Results are cached by key (which always
contains the bundle path, its file stamp and the settings) in a bounded LRU.

A job waits in a queue while the pool is busy: its status says so (``"queued"``, its place,
what runs meanwhile), and its time is counted from when it starts, the wait apart. Each job
remembers the pages (owners) that asked for it; when the last one is left
(:meth:`JobRunner.cancel_owner`) a queued job is dropped and a running one that reports
progress stops at its next report.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Hashable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
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


class JobCancelled(Exception):
    """Raised inside a job whose every page was left (through its progress callback)."""


@dataclass
class JobStatus:
    """Snapshot of one job for a polling callback."""

    state: str  # "queued", "running", "done", "error" or "cancelled"
    result: Any = None
    error: str = ""
    elapsed: float = 0.0  # seconds running (a queued job: seconds waited so far)
    progress: float | None = None  # 0..1 when the job reports it
    waited: float = 0.0  # seconds in the queue before it started
    position: int = 0  # a queued job's place in the queue (1: next)
    running: tuple[str, ...] = ()  # what runs meanwhile (labels), for a queued job


@dataclass
class _Job:
    future: Future
    label: str = ""
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None  # when the pool began it (None: still queued)
    ended: float | None = None
    progress: list = field(default_factory=lambda: [None])
    owners: set = field(default_factory=set)
    cancel: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Run keyed jobs once, in the background, and remember their results."""

    def __init__(self, max_workers: int = 2, max_results: int = 64,
                 max_result_bytes: int = 128 * 2**20):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lcaviz")
        self._jobs: dict[Hashable, _Job] = {}
        self._results = LRU(max_entries=max_results, max_bytes=max_result_bytes)
        self._lock = threading.Lock()

    def status(self, key: Hashable, fn: Callable[..., Any] | None = None, *args: Any,
               progress_kw: str | None = None, owner: str | None = None, label: str = "",
               **kwargs: Any) -> JobStatus:
        """Status of job ``key``; starts ``fn(*args, **kwargs)`` if it is not known yet.

        Args:
            key: cache key (include path, file stamp and every setting).
            fn: the computation; None only polls.
            progress_kw: if given, ``fn`` receives a ``progress(fraction)`` callable under
                this keyword argument (it raises :class:`JobCancelled` once the job's pages
                are all left).
            owner: the page asking (a token); :meth:`cancel_owner` drops its jobs.
            label: what the job is, for the status of the jobs queued behind it.
        """
        done = self._results.get(key)
        if done is not None:
            return done
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                if fn is None:
                    return JobStatus("error", error="unknown job")
                job = self._start(key, fn, args, kwargs, progress_kw, label)
            if owner:
                job.owners.add(owner)
            if job.started is None and not job.future.done():
                return self._queued(job)
        if not job.future.done():
            return JobStatus("running", elapsed=time.monotonic() - job.started,
                             progress=job.progress[0], waited=job.started - job.submitted)
        return self._finish(key, job)

    def _queued(self, job: _Job) -> JobStatus:
        """Status of a job still waiting for a worker (call with the lock held)."""
        waiting = sorted((j for j in self._jobs.values()
                          if j.started is None and not j.future.done()),
                         key=lambda j: j.submitted)
        place = 1 + next((i for i, j in enumerate(waiting) if j is job), 0)
        running = tuple(j.label or "another job" for j in self._jobs.values()
                        if j.started is not None and j.ended is None)
        return JobStatus("queued", elapsed=time.monotonic() - job.submitted, position=place,
                         running=running)

    def cancel_owner(self, owner: str) -> int:
        """The page ``owner`` was left: its jobs that no other page wants are cancelled (a
        queued one never starts; a running one stops at its next progress report). Returns
        how many jobs were cancelled."""
        n = 0
        with self._lock:
            for key, job in list(self._jobs.items()):
                if owner not in job.owners or job.future.done():
                    continue
                job.owners.discard(owner)
                if job.owners:
                    continue
                job.cancel.set()
                if job.future.cancel() or job.started is None:
                    self._jobs.pop(key, None)  # never ran: a later visit starts it afresh
                n += 1
        return n

    def peek(self, key: Hashable) -> JobStatus | None:
        """Status of job ``key`` if it was ever started (never starts one)."""
        done = self._results.get(key)
        if done is not None:
            return done
        with self._lock:
            known = key in self._jobs
        return self.status(key) if known else None

    def _start(self, key, fn, args, kwargs, progress_kw, label: str = "") -> _Job:
        job = _Job(future=Future(), label=label)

        def progress(f: float) -> None:
            if job.cancel.is_set():
                raise JobCancelled("cancelled: every page that asked for it was left")
            job.progress[0] = float(f)

        if progress_kw:
            kwargs = {**kwargs, progress_kw: progress}

        def run():
            if job.cancel.is_set():
                raise JobCancelled("cancelled before it started")
            job.started = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                job.ended = time.monotonic()

        job.future = self._pool.submit(run)
        self._jobs[key] = job
        return job

    def _finish(self, key: Hashable, job: _Job) -> JobStatus:
        started = job.started if job.started is not None else job.submitted
        ended = job.ended if job.ended is not None else time.monotonic()
        elapsed, waited = ended - started, started - job.submitted
        exc = None if job.future.cancelled() else job.future.exception()
        if job.future.cancelled() or isinstance(exc, JobCancelled):
            with self._lock:
                if self._jobs.get(key) is job:
                    self._jobs.pop(key, None)  # not cached: a later visit starts it afresh
            return JobStatus("cancelled", error="cancelled: the page was left",
                             elapsed=elapsed, waited=waited)
        if exc is not None:
            msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            st = JobStatus("error", error=msg, elapsed=elapsed, waited=waited)
        else:
            st = JobStatus("done", result=job.future.result(), elapsed=elapsed, progress=1.0,
                           waited=waited)
        self._results.put(key, st)
        with self._lock:
            self._jobs.pop(key, None)
        trim_heap()
        return st

    def wait(self, key: Hashable, timeout: float = 60.0) -> JobStatus:
        """Block until job ``key`` ends (tests and benchmarks only)."""
        with self._lock:
            job = self._jobs.get(key)
        if job is not None and not job.future.cancelled():
            try:
                job.future.exception(timeout=timeout)
            except CancelledError:
                pass
        return self.status(key) if job is None or key in self._jobs or \
            self._results.get(key) is not None else self._finish(key, job)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
