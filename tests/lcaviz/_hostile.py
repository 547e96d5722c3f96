"""Crafted bundles for the hostile-input tests (issue 28): each generator starts from a small
good bundle and edits it with h5py or byte patches, so no binary fixture is committed."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle.h5flags import lookup3
from tests.lcaviz._bundle_factory import matrix_bundle

SECRET = b"root:x:0:0:root:/root:/bin/bash\nSECRET-LINE-OF-AN-OUTSIDE-FILE\n" * 8


def good(path: Path, T: int = 6, sizes=(4, 6)) -> Path:
    """A small healthy bundle: T iterations, one row each, layers of ``sizes``."""
    rng = np.random.default_rng(0)
    return matrix_bundle(path, rng.normal(size=(T, sum(sizes))).astype(np.float32),
                         list(sizes))


def secret_file(outside: Path) -> Path:
    """A file outside the runs directory that no bundle may read (stands for /etc/passwd)."""
    outside.mkdir(parents=True, exist_ok=True)
    p = outside / "passwd"
    p.write_bytes(SECRET)
    return p


def _replace(f: h5py.File, name: str, make) -> None:
    old = f[name]
    shape, dtype, attrs = old.shape, old.dtype, dict(old.attrs)
    del f[name]
    ds = make(shape, dtype)
    if isinstance(ds, h5py.Dataset):
        ds.attrs.update(attrs)


def external_storage(path: Path, outside: Path) -> Path:
    """``lca``'s raw data is the bytes of an outside file (HDF5 external storage)."""
    secret = secret_file(outside)
    good(path)
    with h5py.File(path, "r+") as f:
        _replace(f, "lca", lambda shape, dtype: f.create_dataset(
            "lca", shape=shape, dtype=dtype, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]))
    return path


def _outside_h5(outside: Path) -> Path:
    outside.mkdir(parents=True, exist_ok=True)
    p = outside / "stolen.h5"
    with h5py.File(p, "w") as f:
        f["layer_names"] = np.array([b"STOLEN-A", b"STOLEN-B"], dtype="S")
        f["loss"] = np.full(7, 123456.0)
    return p


def external_link(path: Path, outside: Path) -> Path:
    """``params/layer_names`` is an external link into an outside HDF5 file."""
    other = _outside_h5(outside)
    good(path)
    with h5py.File(path, "r+") as f:
        del f["params/layer_names"]
        f["params/layer_names"] = h5py.ExternalLink(str(other), "/layer_names")
    return path


def virtual_dataset(path: Path, outside: Path) -> Path:
    """``loss/train`` is a virtual dataset mapping an outside HDF5 file."""
    other = _outside_h5(outside)
    good(path)
    with h5py.File(path, "r+") as f:
        layout = h5py.VirtualLayout(shape=(7,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "loss", shape=(7,))
        del f["loss/train"]
        f["loss"].create_virtual_dataset("train", layout)
    return path


def soft_link_out(path: Path, outside: Path) -> Path:
    """``loss/train`` is a soft link to an external link (a soft link leaving the file)."""
    other = _outside_h5(outside)
    good(path)
    with h5py.File(path, "r+") as f:
        f["stolen_loss"] = h5py.ExternalLink(str(other), "/loss")
        del f["loss/train"]
        f["loss/train"] = h5py.SoftLink("/stolen_loss")
    return path


def set_superblock_flags(path: Path, flags: int) -> None:
    """Set the superblock's consistency flags (0b101: open for SWMR writing) and re-checksum."""
    data = bytearray(path.read_bytes())
    size = 12 + 4 * data[9]
    data[11] = flags
    data[size:size + 4] = lookup3(bytes(data[:size])).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def damaged_live(path: Path, which: int = 3) -> Path:
    """SWMR "open for writing" flag set and one object header's checksum broken."""
    good(path)
    set_superblock_flags(path, 0b101)
    data = bytearray(path.read_bytes())
    headers = [i for i in range(len(data) - 4) if data[i:i + 4] == b"OHDR"]
    data[headers[which] + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def huge_declared(path: Path, name: str = "lca", rows: int = 6,
                  width: int = 250_000_000) -> Path:
    """A tiny file whose parameter table and ``name`` declare ``rows × width`` values that
    were never written (the chunks are unallocated, so they would read as zeros)."""
    good(path)
    with h5py.File(path, "r+") as f:
        g = f["params"]
        P = width
        for key, value in (("offsets", np.array([0, 4, P], np.int64)),
                           ("shapes", np.array([[4, -1, -1, -1], [P - 4, -1, -1, -1]],
                                               np.int64)),
                           ("layer_sizes", np.array([4, P - 4], np.int64))):
            del g[key]
            g[key] = value
        for key in ("param_help_iters", "param_nonzero_iters"):
            del f[key]
            f.create_dataset(key, shape=(P,), dtype="i4", chunks=(2**20,))
        for key in ("lca", "lca_cumsum"):
            n = f[key].shape[0]
            del f[key]
            f.create_dataset(key, shape=(n, P), dtype="f4", chunks=(8, 32768),
                             maxshape=(None, P))
        f["lca_cumsum"].attrs["every"] = 4
        del f["lca_columns"]
        f["lca_columns"] = np.array([[0, P]], np.int64)
    return path


def long_series(path: Path, T: int = 200_000_000) -> Path:
    """``progress`` and every per-iteration series declare T iterations (never written)."""
    good(path)
    with h5py.File(path, "r+") as f:
        for name in list(_series_names(f)):
            old = f[name]
            tail, dtype, extra = old.shape[1:], old.dtype, 1 if name in ("loss/train",
                                                                          "accuracy/train") else 0
            del f[name]
            f.create_dataset(name, shape=(T + extra, *tail), dtype=dtype,
                             chunks=(4096, *tail), maxshape=(None, *tail))
        f["progress"][0] = T
    return path


def _series_names(f: h5py.File):
    for name in ("loss/train", "accuracy/train", "loss/minibatch", "lca_residual", "splits",
                 "lca_layer", "help_count", "hurt_count", "timing/seconds", "lca_class_layer"):
        if name in f:
            yield name


def truncated(path: Path, how: str = "eof", T: int = 40, P: int = 1000) -> Path:
    """A killed writer's bundle (SWMR flag still set) whose last 8 ``lca`` rows are missing:
    they lie past the end of the file (``how="eof"``: ``lca`` stored contiguously at the end,
    the file cut short) or their chunks were never written (``"never"``). HDF5 reads both as
    zeros."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(T, P)).astype(np.float32) + 3  # no zeros in a real row
    matrix_bundle(path, data, [P // 2, P - P // 2])
    with h5py.File(path, "r+", libver="latest") as f:
        attrs, chunks = dict(f["lca"].attrs), f["lca"].chunks
        del f["lca"]
        if how == "eof":
            ds = f.create_dataset("lca", data=data)  # contiguous, allocated when written
        else:
            ds = f.create_dataset("lca", shape=(T, P), maxshape=(None, P), chunks=chunks,
                                  dtype="f4")
            ds[:T - 8] = data[:T - 8]
        ds.attrs.update(attrs)
    if how == "eof":
        with h5py.File(path, "r") as f:
            end = f["lca"].id.get_offset() + data.nbytes
        assert end == path.stat().st_size, "lca is not the last thing in the file"
        with open(path, "r+b") as fh:
            fh.truncate(end - 8 * P * 4)
    set_superblock_flags(path, 0b101)
    return path


def malformed(path: Path, kind: str) -> Path:
    """A good bundle with one defect of issue 28 item 7."""
    good(path)
    with h5py.File(path, "r+") as f:
        if kind in ("config-list", "config-null"):
            f.attrs["config"] = json.dumps([1, 2, 3] if kind == "config-list" else None)
        elif kind == "layer-index":
            f["params/layer"][1] = 7
        elif kind == "tensor-shape":
            f["params/shapes"][0] = [3, 3, -1, -1]
        elif kind == "string-dtype":
            n = f["loss/train"].shape[0]
            del f["loss/train"]
            f["loss/train"] = np.array([b"oops"] * n)
        elif kind == "zero-layers":
            for key, value in (("layer_names", np.zeros(0, "S1")),
                               ("layer_sizes", np.zeros(0, np.int64))):
                del f["params"][key]
                f["params"][key] = value
            for key in ("names", "module_type"):
                del f["params"][key]
                f["params"][key] = np.zeros(0, "S1")
            for key, value in (("shapes", np.zeros((0, 4), np.int64)),
                               ("offsets", np.zeros(1, np.int64)),
                               ("layer", np.zeros(0, np.int32))):
                del f["params"][key]
                f["params"][key] = value
        else:
            raise ValueError(kind)
    return path


MALFORMED = ("config-list", "config-null", "layer-index", "tensor-shape", "string-dtype",
             "zero-layers")
