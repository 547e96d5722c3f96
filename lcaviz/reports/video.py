"""Video frames and files for :mod:`lcaviz.reports.animation` (numpy + Pillow, no bundle).

:class:`Canvas` lays out one frame: a title, the frame's caption (its iterations), the panels
(one coloured image per tensor, stacked vertically at one width, as in the dashboard's
heatmap) and a vertical colour bar with its numeric range. Static parts are drawn once; a frame
costs a nearest-neighbour resize per panel and a few lines of text. Width and height are even,
as H.264 (yuv420p) needs. :func:`write_gif` and :func:`write_mp4` write frames to files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lcaviz.figures.theme import DIVERGING

MP4_CRF = 20  # H.264 constant rate factor: lower is better quality and larger files
# x264 preset: on LCA frames "veryfast" encodes 2-4x faster than "medium" at the same crf, and
# its files were no larger (0.33 vs 0.34 MB for the MNIST-FC sample run's fc1.weight)
MP4_PRESET = "veryfast"
MARGIN, GAP, BAR_W, STRIP_H = 10, 8, 14, 18
TARGET_W, TARGET_H, MAX_SCALE = 800, 400, 8  # panels are upscaled towards this size
MIN_W, MAX_H = 320, 640  # panels are stretched to at least MIN_W wide, at most MAX_H high
INK, MUTED, WHITE = (34, 34, 34), (102, 102, 102), (255, 255, 255)


def _lut() -> np.ndarray:
    """(257, 3) uint8 colour table from the DIVERGING stops (odd: entry 128 is exactly zero)."""
    stops = np.array([s for s, _ in DIVERGING])
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for _, c in DIVERGING], float)
    x = np.linspace(0, 1, 257)
    return np.stack([np.interp(x, stops, rgb[:, k]) for k in range(3)], 1).astype(np.uint8)


LUT = _lut()


def colorize(img: np.ndarray, limit: float) -> np.ndarray:
    """Map values to RGB: -limit → dark green, 0 → white, +limit → dark red. (H, W, 3) uint8."""
    t = np.clip((np.asarray(img, np.float64) / limit + 1) / 2, 0, 1)
    return LUT[np.round(np.nan_to_num(t, nan=0.5) * 256).astype(np.int64)]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _panel_size(shape: tuple[int, int], kind: str) -> tuple[int, int]:
    """Natural (width, height) of a panel: integer upscales towards TARGET_W x TARGET_H, the
    two axes at most 4x apart; strips are STRIP_H high."""
    h, w = shape
    sx = max(1, min(MAX_SCALE, TARGET_W // max(w, 1)))
    if kind != "image":
        return w * sx, STRIP_H
    sy = max(1, min(MAX_SCALE, TARGET_H // max(h, 1)))
    sx, sy = min(sx, 4 * sy), min(sy, 4 * sx)
    return w * sx, h * sy


class Canvas:
    """The layout of every frame of one animation.

    Every panel is drawn at one width: that of the widest image panel, or MIN_W (or its label)
    if wider; an image keeps its natural aspect up to MAX_H pixels high, a strip is STRIP_H.

    Args:
        title: drawn on the first line of every frame.
        labels: one label per panel (drawn above it when there is more than one panel).
        shapes: (rows, cols) of each panel's image.
        kinds: ``"image"`` or ``"strip"`` per panel.
        captions: every frame's caption (the widest sets the width).
        range_label: under the colour bar, e.g. ``"fixed"`` or ``"per frame"``.
    """

    def __init__(self, title: str, labels: list[str], shapes: list[tuple[int, int]],
                 kinds: list[str], captions: list[str], range_label: str):
        self.f_title, self.f_text, self.f_small = _font(15), _font(13), _font(11)
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        self._len = measure.textlength
        natural = [_panel_size(s, k) for s, k in zip(shapes, kinds, strict=True)]
        widths = [w for (w, _), k in zip(natural, kinds, strict=True) if k == "image"]
        label_h = 15 if len(shapes) > 1 else 0
        self.pw = max(max(widths or [w for w, _ in natural]), MIN_W,
                      *(int(self._len(t, font=self.f_small)) + 2 for t in labels if label_h))
        self.top = MARGIN + 58
        self.slots, y = [], self.top
        for (w, h), k in zip(natural, kinds, strict=True):
            ph = min(max(1, round(h * self.pw / w)), MAX_H) if k == "image" else STRIP_H
            self.slots.append((y + label_h, ph))
            y += label_h + ph + GAP
        panels_h = y - GAP - self.top
        self.bar_h = max(panels_h, 120)
        self.bar_x = MARGIN + self.pw + 12
        lbl_w = max(self._len(t, font=self.f_small) for t in ("-8.88e-88", range_label, "LCA"))
        texts = max([self._len(title, font=self.f_title)] +
                    [self._len(c, font=self.f_text) for c in captions[:1] + captions[-1:]] +
                    [self._len(c, font=self.f_text) for c in captions[::max(1, len(captions)
                                                                            // 50)]])
        w = max(self.bar_x + BAR_W + 6 + int(lbl_w) + MARGIN, int(texts) + 2 * MARGIN + 1)
        h = self.top + max(panels_h, self.bar_h + 16) + MARGIN
        self.width, self.height = w + w % 2, h + h % 2
        base = Image.new("RGB", (self.width, self.height), WHITE)
        d = ImageDraw.Draw(base)
        d.text((MARGIN, MARGIN), title, fill=INK, font=self.f_title)
        if label_h:
            for (py, _), label in zip(self.slots, labels, strict=True):
                d.text((MARGIN, py - label_h), label, fill=MUTED, font=self.f_small)
        grad = LUT[::-1][np.linspace(0, 256, self.bar_h).round().astype(np.int64)]
        bar = np.repeat(grad[:, None, :], BAR_W, axis=1)
        base.paste(Image.fromarray(bar), (self.bar_x, self.top))
        d.rectangle([self.bar_x - 1, self.top - 1, self.bar_x + BAR_W, self.top + self.bar_h],
                    outline=MUTED)
        d.text((self.bar_x, self.top - 16), "LCA", fill=INK, font=self.f_small)
        d.text((self.bar_x, self.top + self.bar_h + 3), range_label, fill=MUTED,
               font=self.f_small)
        self.base = np.asarray(base).copy()

    def draw(self, panels: list[np.ndarray], limit: float, caption: str) -> np.ndarray:
        """One frame: the coloured ``panels`` ((h, w, 3) uint8, one per slot), the caption and
        the colour bar's numbers for ``limit``. (height, width, 3) uint8."""
        frame = self.base.copy()
        for (y, ph), rgb in zip(self.slots, panels, strict=True):
            im = Image.fromarray(rgb).resize((self.pw, ph), Image.NEAREST)
            frame[y:y + ph, MARGIN:MARGIN + self.pw] = np.asarray(im)
        im = Image.fromarray(frame)
        d = ImageDraw.Draw(im)
        d.text((MARGIN, MARGIN + 22), caption, fill=INK, font=self.f_text)
        x, top, bottom = self.bar_x + BAR_W + 5, self.top, self.top + self.bar_h
        d.text((x, top), f"+{limit:.3g}", fill=INK, font=self.f_small, anchor="lt")
        d.text((x, (top + bottom) // 2), "0", fill=INK, font=self.f_small, anchor="lm")
        d.text((x, bottom), f"-{limit:.3g}", fill=INK, font=self.f_small, anchor="lb")
        return np.asarray(im)


# GIF palette: every other colour of the map (white and both ends included) and 127 greys
# (text is antialiased); frames are mapped onto it exactly (nearest colour per distinct colour)
PALETTE = np.concatenate([LUT[::2], np.repeat(np.linspace(0, 255, 127).round()
                                               .astype(np.uint8)[:, None], 3, axis=1)])


def to_palette(rgb: np.ndarray) -> Image.Image:
    """A 'P' image of ``rgb`` on :data:`PALETTE`, each distinct colour mapped to its nearest
    palette colour (Pillow's own palette lookup rounds colours to 5-6-5 bits first, which turns
    white into a pale green)."""
    h, w = rgb.shape[:2]
    key = rgb.reshape(-1, 3).astype(np.int32) @ np.array([65536, 256, 1], np.int32)
    uniq, inv = np.unique(key, return_inverse=True)
    cols = np.stack([uniq >> 16, (uniq >> 8) & 255, uniq & 255], 1)
    dist = ((cols[:, None, :] - PALETTE[None, :, :].astype(np.int32)) ** 2).sum(axis=2)
    im = Image.fromarray(dist.argmin(axis=1).astype(np.uint8)[inv.ravel()].reshape(h, w), "P")
    im.putpalette(PALETTE.ravel().tolist())
    return im


def write_gif(frames: Iterable[np.ndarray], out, *, fps: float) -> int:
    """Write RGB frames as an animated, looping GIF (one fixed palette); returns the count.

    GIF delays are whole centiseconds of at least 2 (browsers slow down faster GIFs), so the
    rate is close to, and at most 50, frames per second.
    """
    images = [to_palette(f) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, int(round(1000 / fps))), optimize=False)
    return len(images)


def write_mp4(frames: Iterable[np.ndarray], out: str | Path, *, fps: float,
              crf: int = MP4_CRF) -> int:
    """Write RGB frames (even width and height) as H.264 MP4 (yuv420p, ``-crf crf``, preset
    :data:`MP4_PRESET`, faststart) with ``imageio-ffmpeg``'s own ffmpeg; returns the count."""
    import imageio_ffmpeg

    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to write")
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs an even frame size, got {w}x{h}")
    writer = imageio_ffmpeg.write_frames(
        str(out), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
        quality=None, macro_block_size=2, ffmpeg_log_level="error",
        output_params=["-crf", str(int(crf)), "-preset", MP4_PRESET, "-movflags", "+faststart",
                       "-f", "mp4"])
    writer.send(None)  # start ffmpeg
    n = 0
    try:
        for f in itertools.chain([first], it):
            writer.send(np.ascontiguousarray(f, dtype=np.uint8))
            n += 1
    finally:
        writer.close()
    return n
