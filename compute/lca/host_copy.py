"""Device→host copies of a run's per-iteration record that overlap the next evaluation.

On CUDA each ``.cpu()`` of a record field (the per-layer sums, a closing per-parameter row, θ
with ``--save-trajectory``) blocks the host until the device has finished everything queued
before it. :class:`HostCopies` instead snapshots the tensor on the device (in the compute
stream's order, so an in-place update queued after it, such as the row window's reset, cannot
race the transfer), copies the snapshot into pinned host memory on a side stream with
``non_blocking=True`` and hands back a NumPy view of that buffer; :meth:`HostCopies.fence`
marks the iteration's copies with an event. :meth:`HostCopies.deferred` wraps the bundle writer
so that a record is appended (after waiting on its event) only when the writer is next used,
i.e. after the next iteration's evaluation has been queued: the copies of iteration t run on
the copy engine while iteration t+1 computes.

On a CPU nothing changes: every copy is an independent host array made at once (``"sync"``),
and the writer is used as it is. Which of the two a run used is recorded in its bundle's config
(``host_copy``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch


class Fence(Protocol):
    """Something whose ``synchronize()`` returns once the copies it covers have landed."""

    def synchronize(self) -> None: ...


class Streams(Protocol):
    """Where the asynchronous copies run (:class:`CudaStreams`, or a fake in tests)."""

    def transfer(self, src: torch.Tensor) -> torch.Tensor:
        """Queue a copy of ``src`` into a new host buffer; return the buffer (not yet valid)."""
        ...

    def event(self) -> Fence:
        """A fence covering every transfer queued so far."""
        ...


class _Ready:
    """The fence of synchronous copies: already done."""

    def synchronize(self) -> None:
        return None


class CudaStreams:
    """Pinned host buffers filled on a side CUDA stream, ordered after the compute stream."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def transfer(self, src: torch.Tensor) -> torch.Tensor:
        # the side stream starts after everything queued so far on the compute stream
        # (src's snapshot included), then runs beside what the compute stream does next
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            buf = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
            buf.copy_(src, non_blocking=True)
        src.record_stream(self.stream)  # its device memory is not reused before the copy ran
        return buf

    def event(self) -> torch.cuda.Event:
        ev = torch.cuda.Event()
        ev.record(self.stream)
        return ev


class HostCopies:
    """The host copies of one run's records: synchronous on CPU, pinned and async on CUDA.

    Args:
        device: the run's device.
        streams: where asynchronous copies run; None picks :class:`CudaStreams` on CUDA and
            synchronous copies elsewhere (tests pass a fake to exercise the async logic on CPU).
    """

    def __init__(self, device: torch.device | str, streams: Streams | None = None):
        device = torch.device(device)
        if streams is None and device.type == "cuda":
            streams = CudaStreams(device)
        self._streams = streams
        self.mode = "sync" if streams is None else "pinned-async"

    def __call__(self, t: torch.Tensor) -> np.ndarray:
        """A host copy of ``t`` as it is now; in ``pinned-async`` mode valid only after the
        :meth:`fence` taken after it has synchronized."""
        if self._streams is None:  # on CPU ``.numpy()`` would alias a buffer we reuse
            return t.detach().cpu().numpy().copy()
        snapshot = t.detach().clone()  # queued now: later in-place updates cannot reach it
        return self._streams.transfer(snapshot).numpy()

    def fence(self) -> Fence:
        """A fence covering every copy made so far."""
        return _Ready() if self._streams is None else self._streams.event()

    def deferred(self, writer: Any) -> Any:
        """``writer`` itself for synchronous copies, else a :class:`DeferredWriter` around it."""
        return writer if self._streams is None else DeferredWriter(writer, self)


class DeferredWriter:
    """A bundle writer whose ``append`` waits for its record's host copies only when needed.

    ``append(rec)`` takes a fence for the copies in ``rec`` and keeps it; the record held
    before it is appended first (after its fence). Any other use of the writer (flush,
    counters, checkpoint, close, ``T``, ``path``) appends the held record first, so the bundle
    sees the same calls in the same order as without the wrapper.
    """

    def __init__(self, writer: Any, copies: HostCopies):
        self._writer = writer
        self._copies = copies
        self._held: tuple[Any, Fence] | None = None

    def append(self, rec: Any) -> None:
        fence = self._copies.fence()
        self.drain()
        self._held = (rec, fence)

    def drain(self) -> None:
        """Append the held record, once its copies have landed."""
        if self._held is not None:
            rec, fence = self._held
            self._held = None
            fence.synchronize()
            self._writer.append(rec)

    def __getattr__(self, name: str) -> Any:
        self.drain()
        return getattr(self._writer, name)
