"""How one training example is drawn (thumbnails of the dashboard's "Examples" section).

An example is drawn by the first renderer that accepts it, newest first:

1. renderers registered with :func:`register_example_renderer` (a user's own data);
2. the stored thumbnail (``examples/thumbnail``: MNIST, Fashion-MNIST, CIFAR) as a PNG;
3. the stored text (``examples/text``: ``"a + b ≡ c (mod p)"`` for modular addition);
4. ``"#index · label"``.

A renderer is ``fn(example: Example) -> str | numpy.ndarray | None``: a string is shown as
text, a uint8 array (H, W) or (H, W, 3) (floats in [0, 1] are scaled) as an image, None
passes the example on to the next renderer. Every text is set as text in the page (never as
HTML), so a label from a bundle cannot inject markup.

    import lcaviz

    def words(ex):                      # a text classifier's examples, from my own data
        return my_sentences[ex.index] if ex.run.get("dataset") == "imdb" else None

    lcaviz.register_example_renderer(words)
"""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MAX_TEXT = 200  # characters of an example's text shown (a renderer may return more)
_RENDERERS: list[Callable] = []
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Example:
    """What a renderer gets: the example's position in the training split (``index``), its
    (as-trained) ``label`` or None, the stored ``thumbnail`` / ``text`` or None, and ``run``:
    the bundle's config (``dataset``, ...) as a dict."""

    index: int
    label: int | None = None
    thumbnail: np.ndarray | None = None
    text: str | None = None
    run: dict = field(default_factory=dict)


def register_example_renderer(fn: Callable[[Example], str | np.ndarray | None]) -> Callable:
    """Add ``fn`` before every renderer registered so far (it is asked first); returns ``fn``,
    so it can decorate. See the module docstring for what ``fn`` returns."""
    if not callable(fn):
        raise TypeError("an example renderer must be callable")
    with _LOCK:
        _RENDERERS.insert(0, fn)
    return fn


def unregister_example_renderer(fn: Callable) -> None:
    """Remove a renderer added with :func:`register_example_renderer` (absent: no error)."""
    with _LOCK:
        while fn in _RENDERERS:
            _RENDERERS.remove(fn)


def caption(index: int, label: int | None) -> str:
    """``"#index · label"`` (the index alone without labels)."""
    return f"#{int(index):,}" + ("" if label is None else f" · {int(label)}")


def png_bytes(img: np.ndarray) -> bytes:
    """A PNG of a uint8 (H, W) grey or (H, W, 3) RGB image (zlib, no imaging library)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or 0 in a.shape[:2]:
        raise ValueError(f"an example image must be (H, W) or (H, W, 3), not {a.shape}")
    h, w = a.shape[:2]
    colour = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\0" + a[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0,
                                                               0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(img: np.ndarray) -> str:
    """``data:image/png;base64,...`` of :func:`png_bytes`."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def _builtin(ex: Example) -> str | np.ndarray:
    if ex.thumbnail is not None:
        return ex.thumbnail
    if ex.text:
        return ex.text
    return caption(ex.index, ex.label)


def render_example(ex: Example) -> dict:
    """``{"index", "label", "caption", "kind": "image", "src"}`` or ``{..., "kind": "text",
    "text"}``: what the page draws for ``ex``. A renderer that raises or returns something
    else is skipped (the next one draws the example) and its error is kept in ``"error"``."""
    with _LOCK:
        chain = [*_RENDERERS, _builtin]
    out = {"index": int(ex.index), "label": None if ex.label is None else int(ex.label),
           "caption": caption(ex.index, ex.label)}
    for fn in chain:
        try:
            got = fn(ex)
            if got is None:
                continue
            if isinstance(got, str):
                return {**out, "kind": "text", "text": got[:MAX_TEXT]}
            return {**out, "kind": "image", "src": data_uri(np.asarray(got))}
        except Exception as e:  # noqa: BLE001 - a user's renderer must not break the page
            out["error"] = f"{getattr(fn, '__name__', 'renderer')}: {e}"
    return {**out, "kind": "text", "text": out["caption"]}
