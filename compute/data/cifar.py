"""CIFAR-10 python batches, read with a restricted unpickler.

CIFAR-10 ships as Python-2 pickles; plain ``pickle.load`` would run whatever a tampered file
asks, so only plain containers and numpy arrays are rebuilt.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
CIFAR_HINT = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html,"
              " extract it and pass its cifar-10-batches-py directory as the data root")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1"); allow only that
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 1.26
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays (CIFAR-10 batches).

    CIFAR-10 ships as pickles; plain ``pickle.load`` would run whatever a tampered file asks.
    """

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _np_reconstruct()
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a pickle")


def load_cifar_batch(path: str | Path) -> dict:
    """Loads one CIFAR-10 python batch file (a Python-2 pickle) safely; keys are bytes."""
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, encoding="bytes").load()
        except EOFError as e:
            raise pickle.UnpicklingError(f"{path}: truncated pickle") from e


def _get(d: dict, key: str):
    return d[key.encode()] if key.encode() in d else d[key]


def _cifar_dir(root: Path) -> Path:
    sub = root / "cifar-10-batches-py"
    return sub if sub.is_dir() else root


def _load_cifar_raw(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    d = _cifar_dir(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 not found in {d} (missing {', '.join(missing)}); "
                                f"{CIFAR_HINT}")
    xs, ys = [], []
    for n in names:
        b = load_cifar_batch(d / n)
        try:  # rows are 1024 R, then G, then B values of a row-major 32x32 image
            xs.append(np.asarray(_get(b, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(_get(b, "labels"), dtype=np.int64))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{d / n}: not a CIFAR-10 batch ({e!r})") from e
        if len(xs[-1]) != len(ys[-1]):
            raise ValueError(f"{d / n}: {len(xs[-1])} images but {len(ys[-1])} labels")
    classes = CIFAR_CLASSES
    if (d / "batches.meta").is_file():
        meta = load_cifar_batch(d / "batches.meta")
        classes = [c.decode() if isinstance(c, bytes) else c for c in _get(meta, "label_names")]
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5], classes
