"""One writer per bundle path: an exclusive, non-blocking lock on ``RUN.h5.lock``.

Two ``lca-run`` started at once on the same ``--out`` used to both create the bundle (one
truncating the other's file under it). The lock is taken before anything touches the bundle or
its checkpoint; the loser is told who holds it. It is an ``flock`` on a small file beside the
bundle, so a writer that is killed (even with SIGKILL) releases it with its process, and a
stale lock file left behind is simply locked again by the next writer.
"""

from __future__ import annotations

import os
from pathlib import Path

try:  # POSIX; elsewhere (Windows) runs are not protected against a second writer
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None  # type: ignore[assignment]


class BundleBusy(RuntimeError):
    """Another process holds the writer lock of this bundle path."""


def lock_path(bundle: str | Path) -> Path:
    """The lock file of ``bundle``: ``RUN.h5.lock`` beside it."""
    bundle = Path(bundle)
    return bundle.with_name(bundle.name + ".lock")


class WriterLock:
    """Exclusive lock on a bundle path, held from :meth:`acquire` to :meth:`release`.

    Usable as a context manager. Locks are per open file, so a second lock on the same path in
    the same process is refused too.
    """

    def __init__(self, bundle: str | Path):
        self.bundle = Path(bundle)
        self.path = lock_path(bundle)
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock or raise :class:`BundleBusy` naming the process that holds it."""
        if fcntl is None or self._fd is not None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise BundleBusy(f"{self.bundle} is being written by {who} (it holds "
                                 f"{self.path.name}); choose another --out, or wait for it to "
                                 "finish") from None
            # a finishing writer unlinks the file it locked: if that happened between our open
            # and our flock we hold a lock nobody else can see; take the new file's instead
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and remove the lock file (removed while still held: see acquire)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0
