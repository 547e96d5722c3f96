"""Host copies of the per-iteration record (compute/lca/host_copy.py), tested on CPU.

The CUDA path (pinned buffers, a side stream, an event) cannot run here; its logic can: a fake
stream whose copies land only when their fence is waited on (until then the host buffer holds
NaN), so a writer that read a record before its copies landed, or a copy taken from a tensor
that is reset after it, would put NaN or zeros in the bundle.
"""

import json

import h5py
import numpy as np
import torch

import compute.run.build as build
from compute.lca.host_copy import DeferredWriter, HostCopies
from compute.run.config import RunConfig
from compute.run.train import run_lca

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=60, batch_size=50,
             iters=5, chunk_size=128, checkpoint_every=2, seed=5, val_lca=True,
             save_trajectory=True, precision="float64")


class FakeEvent:
    def __init__(self, queue: list):
        self.queue = queue
        self.upto = len(queue)  # covers the transfers queued so far
        self.waited = False

    def synchronize(self) -> None:
        for src, buf in self.queue[:self.upto]:
            buf.copy_(src)
        self.waited = True


class FakeStreams:
    """Copies that land only when a fence covering them is waited on."""

    def __init__(self):
        self.queue: list = []
        self.events: list[FakeEvent] = []

    def transfer(self, src: torch.Tensor) -> torch.Tensor:
        buf = torch.full(src.shape, float("nan"), dtype=src.dtype)
        self.queue.append((src, buf))
        return buf

    def event(self) -> FakeEvent:
        self.events.append(FakeEvent(self.queue))
        return self.events[-1]


class ListWriter:
    def __init__(self):
        self.appended, self.T = [], 0

    def append(self, rec) -> None:
        self.appended.append(np.array(rec, copy=True))
        self.T += 1


def test_cpu_copies_are_synchronous_and_independent():
    copies = HostCopies("cpu")
    assert copies.mode == "sync"
    t = torch.arange(4.0)
    a = copies(t)
    t.zero_()  # the row window is reset in place right after its copy
    np.testing.assert_array_equal(a, [0.0, 1.0, 2.0, 3.0])
    writer = ListWriter()
    assert copies.deferred(writer) is writer  # on CPU the writer is used as it is


def test_deferred_writer_appends_only_after_the_copies_landed():
    streams = FakeStreams()
    copies = HostCopies("cpu", streams=streams)
    assert copies.mode == "pinned-async"
    inner = ListWriter()
    writer = copies.deferred(inner)
    assert isinstance(writer, DeferredWriter)
    window = torch.tensor([1.0, -2.0])
    rec0 = copies(window)
    window.zero_()  # after the copy was queued: the snapshot keeps the values
    assert np.isnan(rec0).all()  # still in flight
    writer.append(rec0)
    assert inner.appended == []  # held while the next iteration computes
    window += 5.0
    writer.append(copies(window))
    assert len(inner.appended) == 1
    np.testing.assert_array_equal(inner.appended[0], [1.0, -2.0])
    assert streams.events[0].waited
    assert writer.T == 2  # any other use appends the held record first
    np.testing.assert_array_equal(inner.appended[1], [5.0, 5.0])


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        out["config"] = json.loads(f.attrs["config"])
    return out


def test_overlapped_copies_write_the_same_bundle(tmp_path, monkeypatch):
    """A run whose record copies go through the async path (fake stream) writes a bundle equal
    to the synchronous one, value for value (rows closing every second iteration and a partial
    last row, trajectory, validation LCA, per-class LCA, checkpoints in between)."""
    cfg = RunConfig(**SMALL, lca_rows="2")
    sync = _datasets(run_lca(cfg, tmp_path / "sync.h5", progress=False))
    streams = FakeStreams()
    monkeypatch.setattr(build, "HostCopies", lambda device: HostCopies(device, streams))
    overlapped = _datasets(run_lca(cfg, tmp_path / "async.h5", progress=False))
    assert sync["config"]["host_copy"] == "sync"
    assert overlapped["config"]["host_copy"] == "pinned-async"
    assert len(streams.events) == SMALL["iters"] and len(streams.queue) > 3 * SMALL["iters"]
    assert all(e.waited for e in streams.events)
    assert sync.keys() == overlapped.keys()
    for name in sync:
        if name in ("config", "timing/seconds"):
            continue
        np.testing.assert_array_equal(overlapped[name], sync[name], err_msg=name)
