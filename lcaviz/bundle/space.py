"""Room on disk for the next write: free space and the file-size limit (``ulimit -f``).

HDF5 does not recover from a write that fails half way (ENOSPC or EFBIG inside a flush leaves
its metadata cache unable to close the file, and a file-size limit has crashed it outright), and
``torch.save`` leaves a half-written checkpoint. So the writers check *before* each write that
it fits with :data:`HEADROOM` to spare, and stop cleanly while the file can still be closed:
the last flushed iteration stays readable and the last checkpoint resumable once space is free.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

# what closing a bundle (its metadata, the status attributes) may still need after the check
HEADROOM = 1 << 20


class NoRoom(OSError):
    """The next write would not fit: ``errno`` is ENOSPC (disk) or EFBIG (file-size limit)."""


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def file_size_limit() -> int | None:
    """The soft RLIMIT_FSIZE in bytes, or None when there is none."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def free_bytes(directory: str | Path) -> int:
    """Bytes an unprivileged process may still write on the file system of ``directory``."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def ensure_room(path: str | Path, need: int, what: str) -> None:
    """Raise :class:`NoRoom` unless ``need`` more bytes (plus :data:`HEADROOM`) fit in ``path``.

    Args:
        path: the file about to grow (it may not exist yet).
        need: bytes the write adds at most.
        what: the write, in words, for the message ("the next bundle flush").
    """
    path = Path(path)
    need = int(need) + HEADROOM
    limit = file_size_limit()
    if limit is not None:
        size = path.stat().st_size if path.exists() else 0
        if size + need > limit:
            raise NoRoom(errno.EFBIG, f"File too large: {what} needs ~{_mb(need)} more, and "
                         f"{path.name} ({_mb(size)}) would pass the file-size limit of "
                         f"{_mb(limit)} (ulimit -f)")
    free = free_bytes(path.parent)
    if free < need:
        raise NoRoom(errno.ENOSPC, f"No space left on device: {what} needs ~{_mb(need)}, "
                     f"{_mb(free)} free in {path.parent}")
