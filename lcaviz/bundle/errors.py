"""Typed errors about bundle files, and the guard that turns h5py failures into them.

Every failure to read a file is a :class:`BundleError` subclass whose message names the file
and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# what h5py raises for truncated, damaged or half-written files
_H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


class BundleError(Exception):
    """Base class of every error about a bundle file."""


class NotABundleError(BundleError):
    """Not an HDF5 file, or an HDF5 file that is not an ``lca-bundle``."""


class BundleNotFoundError(NotABundleError, FileNotFoundError):
    """The path does not exist."""


class UnsupportedVersionError(BundleError):
    """An ``lca-bundle`` of a ``format_version`` this reader does not know."""


class MissingRowsError(BundleError, KeyError):
    """Per-parameter rows asked for that the run did not store (``--lca-layers``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingExamplesError(BundleError, KeyError):
    """Per-example LCA asked of a run that did not track examples (``--per-example``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CorruptBundleError(BundleError):
    """Truncated or damaged file, missing datasets, or inconsistent shapes."""


class TruncatedBundleError(CorruptBundleError):
    """Rows the bundle's ``progress`` promises lie past the end of the file or were never
    written (a writer killed mid-run, a copy cut short): reading them would give zeros."""


class RefusedBundleError(BundleError):
    """A file the reader will not read: it points outside itself (external links, external
    storage, virtual datasets), or declares more data than the file can hold."""


@contextmanager
def read_guard(path: Path, what: str) -> Iterator[None]:
    """Turn the exceptions h5py raises for damaged files into :class:`CorruptBundleError`."""
    try:
        yield
    except BundleError:
        raise
    except _H5_ERRORS as e:
        raise CorruptBundleError(f"{path}: damaged bundle while {what}: "
                                 f"{type(e).__name__}: {e}") from e
