"""Clear the "open for writing" flags that a killed SWMR writer leaves in an HDF5 file.

HDF5 (superblock version 2/3, which ``libver="latest"`` writes) marks a file as open for
writing in the superblock's consistency-flags byte; a writer killed by SIGKILL never clears it,
and HDF5 then refuses to open the file for writing again (the ``h5clear`` tool exists for
this). Readers are unaffected. We patch that byte and the superblock checksum (Jenkins'
lookup3, as HDF5 uses), after verifying that the stored checksum matches ours.
"""

from __future__ import annotations

from pathlib import Path

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_M = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (the checksum of HDF5 metadata)."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & _M
    i = 0
    while n - i > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & _M
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & _M
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & _M
        a = (a - c) & _M; a ^= _rot(c, 4); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 6); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 8); b = (b + a) & _M  # noqa: E702
        a = (a - c) & _M; a ^= _rot(c, 16); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 19); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 4); b = (b + a) & _M  # noqa: E702
        i += 12
    if n - i == 0:
        return c
    tail = data[i:] + bytes(12 - (n - i))
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    c ^= b; c = (c - _rot(b, 14)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _M  # noqa: E702
    return c


def clear_write_flags(path: str | Path) -> bool:
    """Reset the superblock consistency flags of ``path``.

    Returns:
        True if flags were set and have been cleared, False if there was nothing to do.

    Raises:
        ValueError: not an HDF5 file with a version 2/3 superblock at offset 0, or its stored
            checksum does not verify (we then refuse to touch it).
    """
    with open(path, "r+b") as fh:
        head = fh.read(64)
        if head[:8] != _SIGNATURE or head[8] not in (2, 3):
            raise ValueError(f"{path}: not an HDF5 file with a version 2/3 superblock")
        size = 12 + 4 * head[9]  # fixed fields + four addresses of `size of offsets` bytes
        body, stored = head[:size], int.from_bytes(head[size : size + 4], "little")
        if lookup3(body) != stored:
            raise ValueError(f"{path}: superblock checksum does not verify; not modifying it")
        if body[11] == 0:
            return False
        body = body[:11] + b"\x00" + body[12:]
        fh.seek(0)
        fh.write(body + lookup3(body).to_bytes(4, "little"))
    return True
