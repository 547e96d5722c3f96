"""Animated GIF of one tensor's per-parameter LCA over training (the paper's Fig. 2 videos).

    lcaviz animate RUN.h5 --tensor fc1.weight [--out fc1.gif] [--max-frames 100] [--fps 8]

Frames are the stored rows (exact window sums when the run has a stride), laid out like the
dashboard heatmap (FC out×in, conv kernels as kh×kw blocks), block-summed to at most
``max_side`` pixels per side, and coloured with the dashboard's green/white/red scale on one
symmetric range for the whole animation, so colours are comparable between frames. Rendering
is numpy + Pillow only (no browser), so it is cheap: one pass over the tensor's columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lcaviz.bundle import BundleError, RunBundle
from lcaviz.figures.layout2d import block_sum, image_shape, symmetric_limit, tensor_image
from lcaviz.figures.theme import DIVERGING


def _lut() -> np.ndarray:
    """(257, 3) uint8 colour table from the DIVERGING stops (odd: entry 128 is exactly zero)."""
    stops = np.array([s for s, _ in DIVERGING])
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for _, c in DIVERGING], float)
    x = np.linspace(0, 1, 257)
    return np.stack([np.interp(x, stops, rgb[:, k]) for k in range(3)], 1).astype(np.uint8)


def colorize(img: np.ndarray, limit: float) -> np.ndarray:
    """Map values to RGB: -limit → dark green, 0 → white, +limit → dark red. (H, W, 3) uint8."""
    t = np.clip((np.asarray(img, np.float64) / limit + 1) / 2, 0, 1)
    return _lut()[np.round(t * 256).astype(np.int64)]


def tensor_frames(bundle: RunBundle, tensor: str, *, max_frames: int = 100,
                  max_side: int = 400) -> tuple[list[np.ndarray], list[int], float]:
    """Block-summed 2-D frames of ``tensor`` for up to ``max_frames`` evenly spaced rows.

    Returns:
        (frames, rows, limit): the images (float64), the stored rows they show, and the shared
        symmetric colour limit.
    """
    row_info = bundle.params.set_index("name").loc[tensor]
    shape = tuple(int(s) for s in row_info["shape"])
    cols = bundle.tensor_columns(tensor)
    rows = np.unique(np.linspace(0, bundle.n_rows - 1, min(max_frames, bundle.n_rows)).astype(int))
    nr, nc = image_shape(shape)
    by, bx = -(-nr // max_side), -(-nc // max_side)
    frames = [block_sum(tensor_image(bundle.row(int(r), cols), shape), by, bx) for r in rows]
    limit = symmetric_limit(np.concatenate([f.ravel() for f in frames]))
    return frames, [int(r) for r in rows], limit


def write_gif(frames: list[np.ndarray], limit: float, out, *, fps: float = 8,
              scale: int | None = None):
    """Colour and upscale the frames (nearest neighbour) and write an animated, looping GIF."""
    from PIL import Image

    h, w = frames[0].shape
    scale = scale or max(1, min(8, 400 // max(h, w, 1)))
    images = [Image.fromarray(colorize(f, limit)).resize((w * scale, h * scale), Image.NEAREST)
              for f in frames]
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=int(1000 / fps), optimize=False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lcaviz animate", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--tensor", required=True, help="parameter tensor name, e.g. fc1.weight")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--max-frames", type=int, default=100)
    ap.add_argument("--fps", type=float, default=8)
    a = ap.parse_args(argv)
    try:
        with RunBundle.open(a.bundle) as b:
            if a.tensor not in set(b.params["name"]):
                names = ", ".join(b.params["name"])
                print(f"lcaviz animate: error: no tensor {a.tensor!r}; tensors: {names}",
                      file=sys.stderr)
                return 2
            frames, rows, limit = tensor_frames(b, a.tensor, max_frames=a.max_frames)
    except BundleError as e:
        print(f"lcaviz animate: error: {e}", file=sys.stderr)
        return 2
    out = a.out or a.bundle.with_name(f"{a.bundle.stem}_{a.tensor}.gif")
    write_gif(frames, limit, out, fps=a.fps)
    print(f"wrote {out} ({len(frames)} frames, rows {rows[0]}..{rows[-1]}, range ±{limit:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
