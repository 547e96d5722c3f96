"""The autograd context the LCA engine evaluates in, whatever its caller's.

``lca.step()`` is often called from inside a training loop's own context: ``torch.autocast``
(mixed precision would evaluate the allocated loss in bfloat16/float16), ``torch.no_grad()`` or
``torch.inference_mode()`` (no gradient at all). The engine needs the model's own dtype and
gradients, so it sets them itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import torch

_AUTOCAST_DEVICES = ("cpu", "cuda")  # the device types torch.autocast is used with here
F = TypeVar("F", bound=Callable)


@contextmanager
def engine_context(device: torch.device | str | None = None) -> Iterator[None]:
    """Inference mode off, gradients on, autocast off (on CPU, CUDA and ``device``'s type)."""
    types = set(_AUTOCAST_DEVICES)
    if device is not None:
        types.add(torch.device(device).type)
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        for t in sorted(types):
            stack.enter_context(torch.autocast(t, enabled=False))
        yield


def in_engine_context(fn: F) -> F:
    """Decorator: run ``fn`` in :func:`engine_context`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with engine_context():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
