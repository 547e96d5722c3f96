"""Animated GIF or MP4 of per-parameter LCA over training (the paper's Fig. 2 videos).

    lcaviz animate RUN.h5 --tensor fc1.weight [--out fc1.mp4] [--max-frames 300] [--fps 8]

Frames are the stored rows (exact sums over each row's iteration window, see
``RunBundle.row_windows``), laid out like the dashboard heatmap (FC out×in, conv kernels as
kh×kw blocks; with ``--layer`` all tensors of a layer stacked vertically), block-summed where
large, coloured with the dashboard's green (helping) / white / red (hurting) scale. Every frame
has a title, the iterations it covers and a colour bar with its numbers. The colour range is by
default fixed over the run at the 99.5th percentile of |values| of a sample of frames (so a few
large early frames do not leave late ones blank); ``--range frame`` rescales every frame.
Rendering is numpy + Pillow (no browser); MP4 is H.264 (yuv420p) through ``imageio-ffmpeg``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcaviz.bundle import BundleError, MissingRowsError, RunBundle
from lcaviz.figures.layout2d import (
    block_sum,
    choose_blocks,
    image_shape,
    symmetric_limit,
    tensor_image,
)
from lcaviz.reports.video import MP4_CRF, Canvas, colorize, write_gif, write_mp4

__all__ = ["colorize", "frame_caption", "make_animation", "plan_animation", "robust_limit",
           "tensor_frames", "write_gif", "write_mp4"]

FORMATS = ("gif", "mp4")
DEFAULT_FPS = 8.0
DEFAULT_MAX_FRAMES = 300
PERCENTILE = 99.5  # the robust colour limit: this percentile of |shown values|
LIMIT_SAMPLE_FRAMES = 32  # frames sampled (evenly) for the fixed limit
LIMIT_SAMPLE_VALUES = 50_000  # values kept per sampled frame (an even stride)
MAX_CELLS = 250_000  # cells of one tensor image before block sums (as the dashboard)
MAX_SIDE = 1024  # and at most this many cells per side


@dataclass
class Plan:
    """What an animation shows: the panels (one per tensor), their columns, the frame rows."""

    title: str
    items: list[dict]  # name, shape, start/size within the values of ``cols``, kind, by, bx
    cols: slice | np.ndarray  # parameter columns read for every frame
    rows: np.ndarray  # the stored rows that are frames, increasing
    n_rows: int  # R of the bundle (frames are a subsample when len(rows) < n_rows)


def frame_rows(n_rows: int, max_frames: int) -> np.ndarray:
    """``min(max_frames, n_rows)`` evenly spaced rows from first to last (all rows if fewer)."""
    n = min(max(int(max_frames), 1), n_rows)
    if n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n_rows - 1, n).round().astype(np.int64))


def _blocks(shape: tuple[int, ...], max_cells: int, max_side: int) -> tuple[int, int]:
    nr, nc = image_shape(shape)
    by, bx = choose_blocks(nr, nc, max_cells)
    return max(by, -(-nr // max_side)), max(bx, -(-nc // max_side))


def plan_animation(b: RunBundle, *, tensor: str | None = None, layer: int | str | None = None,
                   max_frames: int = DEFAULT_MAX_FRAMES, max_cells: int = MAX_CELLS,
                   max_side: int = MAX_SIDE, title: str | None = None) -> Plan:
    """Plan the animation of one ``tensor`` or of all tensors of one ``layer``.

    Raises:
        KeyError: no such tensor or layer.
        MissingRowsError: its parameters have no per-parameter rows (``--lca-layers`` run).
        BundleError: the run has no per-parameter rows yet (R = 0).
    """
    df = b.params
    if (tensor is None) == (layer is None):
        raise ValueError("give exactly one of tensor or layer")
    if tensor is not None:
        if tensor not in set(df["name"]):
            raise KeyError(f"no tensor {tensor!r}; tensors: {', '.join(df['name'])}")
        df, what, cols = df[df["name"] == tensor], tensor, b.tensor_columns(tensor)
    else:
        if isinstance(layer, str) and layer not in b.layer_names and layer.lstrip("-").isdigit():
            layer = int(layer)
        try:
            li = b.layer_index(layer)
        except (IndexError, KeyError):
            raise KeyError(f"no layer {layer!r}; layers: {', '.join(b.layer_names)}") from None
        df, what, cols = df[df["layer"] == li], b.layer_names[li], b.layer_columns(li)
    try:
        b.stored_columns(cols)
    except MissingRowsError:
        kept = ", ".join(b.layer_names[i] for i in b.row_layers) or "none"
        raise MissingRowsError(
            f"{what} has no per-parameter rows in {b.path.name} (the run was made with "
            f"--lca-layers; layers with rows: {kept}), so there is nothing to animate") from None
    if b.n_rows == 0:
        raise BundleError(f"{b.path.name} has no per-parameter rows yet (R = 0): no frames")
    items, start = [], 0
    for r in df.itertuples(index=False):
        shape = tuple(int(s) for s in r.shape)
        by, bx = _blocks(shape, max_cells, max_side)
        items.append({"name": str(r.name), "shape": shape, "start": start, "size": int(r.size),
                      "kind": "image" if len(shape) >= 2 else "strip", "by": by, "bx": bx})
        start += int(r.size)
    return Plan(title or f"{b.path.stem}: {what}", items, cols,
                frame_rows(b.n_rows, max_frames), b.n_rows)


def panel_images(plan: Plan, values: np.ndarray) -> list[np.ndarray]:
    """One frame's flat values of ``plan.cols`` as the block-summed image of every panel."""
    return [block_sum(tensor_image(values[p["start"]:p["start"] + p["size"]], p["shape"]),
                      p["by"], p["bx"]) for p in plan.items]


def _iter_values(b: RunBundle, rows: np.ndarray, cols, span: int = 64) -> Iterator[np.ndarray]:
    """Row values of ``rows``, read in blocks of nearby rows (one HDF5 read per block)."""
    i = 0
    while i < len(rows):
        j = int(np.searchsorted(rows, rows[i] + span, side="left"))
        block = b.rows(int(rows[i]), int(rows[j - 1]) + 1, cols)
        for r in rows[i:j]:
            yield block[int(r - rows[i])]
        i = j


def iter_frames(b: RunBundle, plan: Plan) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(row, panel images)`` of every frame of ``plan``, in order."""
    for r, values in zip(plan.rows, _iter_values(b, plan.rows, plan.cols), strict=True):
        yield int(r), panel_images(plan, values)


def robust_limit(b: RunBundle, plan: Plan, percentile: float = PERCENTILE) -> float:
    """Colour limit fixed over the run: ``percentile`` of |shown values| (block sums, as drawn)
    over up to ``LIMIT_SAMPLE_FRAMES`` evenly spaced frames, ``LIMIT_SAMPLE_VALUES`` values each.
    """
    pick = plan.rows[frame_rows(len(plan.rows), LIMIT_SAMPLE_FRAMES)]
    shown = []
    for values in _iter_values(b, pick, plan.cols):
        z = np.concatenate([img.ravel() for img in panel_images(plan, values)])
        shown.append(z[:: max(1, -(-z.size // LIMIT_SAMPLE_VALUES))])
    return symmetric_limit(np.concatenate(shown), percentile)


def frame_caption(windows: np.ndarray, r: int, n_iters: int) -> str:
    """The iteration counter of row ``r``, from its ``[first, end)`` window, e.g.
    ``"iteration 17 of 500 | row 18 of 248"`` or ``"iterations 220-229 of 500 (sum of 10) |
    row 221 of 248"`` (ASCII only: any font can draw it)."""
    a, e = (int(v) for v in windows[r])
    span = (f"iteration {a:,}" if e - a == 1 else
            f"iterations {a:,}-{e - 1:,}" if e - a > 1 else f"iteration {a:,} (empty)")
    total = f" of {int(n_iters):,}" if n_iters else ""
    tail = f" (sum of {e - a})" if e - a > 1 else ""
    return f"{span}{total}{tail} | row {r + 1:,} of {len(windows):,}"


def render_frames(b: RunBundle, plan: Plan, range_mode: str = "fixed"
                  ) -> tuple[Iterator[np.ndarray], Canvas, float | None]:
    """RGB frames (H, W, 3) uint8, all the same even size, as a lazy iterator.

    Returns:
        (frames, canvas, fixed limit or None for ``range_mode="frame"``).
    """
    windows = b.row_windows
    captions = [frame_caption(windows, int(r), b.n_iters) for r in plan.rows]
    shapes = [tuple(-(-n // k) for n, k in zip(image_shape(p["shape"]), (p["by"], p["bx"]),
                                               strict=True)) for p in plan.items]
    labels = [p["name"] + (f" (block sums {p['by']}x{p['bx']})" if (p["by"], p["bx"]) !=
                           (1, 1) else "") for p in plan.items]
    per_frame = range_mode == "frame"
    canvas = Canvas(plan.title, labels, shapes, [p["kind"] for p in plan.items],
                    captions, "per frame" if per_frame else "fixed")
    limit = None if per_frame else robust_limit(b, plan)

    def gen() -> Iterator[np.ndarray]:
        for k, (_, images) in enumerate(iter_frames(b, plan)):
            lim = limit if limit is not None else symmetric_limit(
                np.concatenate([i.ravel() for i in images]), PERCENTILE)
            yield canvas.draw([colorize(i, lim) for i in images], lim, captions[k])

    return gen(), canvas, limit


def output_format(out: Path | None, fmt: str | None) -> str:
    """``fmt``, or the format named by the suffix of ``out`` (GIF when neither says).

    Raises:
        ValueError: an unknown format or suffix, or ``fmt`` and the suffix disagree.
    """
    suffix = out.suffix.lower().lstrip(".") if out is not None and out.suffix else None
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if suffix is not None and suffix not in FORMATS and fmt is None:
        raise ValueError(f"cannot tell the format from {out.name!r}: use .gif or .mp4 or "
                         "--format")
    if fmt is not None and suffix in FORMATS and suffix != fmt:
        raise ValueError(f"--format {fmt} but the output is named {out.name!r}")
    return fmt or (suffix if suffix in FORMATS else "gif")


def make_animation(b: RunBundle, out: str | Path, *, tensor: str | None = None,
                   layer: int | str | None = None, fmt: str | None = None,
                   fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES,
                   range_mode: str = "fixed", crf: int = MP4_CRF,
                   title: str | None = None) -> dict:
    """Write the GIF or MP4 of one tensor or one layer to ``out``.

    Args:
        b: the open run.
        out: output path (its suffix picks the format unless ``fmt`` is given).
        tensor: a parameter tensor name (or ``layer``: all its tensors, stacked).
        fmt: ``"gif"`` or ``"mp4"``.
        fps: frames per second.
        max_frames: at most this many frames, rows evenly spaced over the run.
        range_mode: ``"fixed"`` (one robust limit for the run) or ``"frame"``.
        crf: H.264 quality of an MP4.
        title: the text over every frame (default ``"<run>: <tensor or layer>"``).

    Returns:
        ``frames, rows (first, last), n_rows, width, height, limit (None per frame), format``.
    """
    out = Path(out)
    fmt = output_format(out, fmt)
    plan = plan_animation(b, tensor=tensor, layer=layer, max_frames=max_frames, title=title)
    frames, canvas, limit = render_frames(b, plan, range_mode)
    n = write_mp4(frames, out, fps=fps, crf=crf) if fmt == "mp4" else \
        write_gif(frames, out, fps=fps)
    return {"frames": n, "rows": (int(plan.rows[0]), int(plan.rows[-1])), "n_rows": plan.n_rows,
            "width": canvas.width, "height": canvas.height, "limit": limit, "format": fmt}


def tensor_frames(bundle: RunBundle, tensor: str, *, max_frames: int = 100,
                  max_side: int = 400) -> tuple[list[np.ndarray], list[int], float]:
    """Block-summed 2-D frames of ``tensor`` for up to ``max_frames`` evenly spaced rows.

    Returns:
        (frames, rows, limit): the images (float64), the stored rows they show, and the fixed
        robust colour limit (:func:`robust_limit`).
    """
    plan = plan_animation(bundle, tensor=tensor, max_frames=max_frames, max_side=max_side)
    frames = [images[0] for _, images in iter_frames(bundle, plan)]
    return frames, [int(r) for r in plan.rows], robust_limit(bundle, plan)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lcaviz animate", description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="the run bundle (.h5)")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--tensor", help="parameter tensor name, e.g. fc1.weight (this or "
                                       "--layer is required)")
    what.add_argument("--layer", help="layer name or index: all its tensors stacked "
                                      "vertically, as in the dashboard's heatmap")
    ap.add_argument("--out", type=Path, default=None,
                    help="output file; a .gif or .mp4 suffix picks the format (default: "
                         "RUN_<tensor or layer>.<format> next to the bundle)")
    ap.add_argument("--format", choices=FORMATS, default=None,
                    help="gif, or mp4 (H.264, yuv420p) (default: the --out suffix, else gif)")
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS,
                    help=f"frames per second (default: {DEFAULT_FPS:g})")
    ap.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                    help="at most this many frames: a longer run shows evenly spaced rows, "
                         "the rows in between left out, not summed in (default: "
                         f"{DEFAULT_MAX_FRAMES})")
    ap.add_argument("--range", dest="range_mode", choices=("fixed", "frame"), default="fixed",
                    help=f"colour range: fixed over the run (the {PERCENTILE}th percentile of "
                         f"|LCA| over up to {LIMIT_SAMPLE_FRAMES} sampled frames) or per frame "
                         "(default: fixed)")
    ap.add_argument("--crf", type=int, default=MP4_CRF,
                    help="MP4 quality: H.264 constant rate factor, 0-51, lower is better and "
                         f"larger (default: {MP4_CRF})")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    what = a.tensor if a.tensor is not None else a.layer
    try:
        fmt = output_format(a.out, a.format)
        out = a.out or a.bundle.with_name(f"{a.bundle.stem}_{what}.{fmt}")
        with RunBundle.open(a.bundle) as b:
            info = make_animation(b, out, tensor=a.tensor, layer=a.layer, fmt=fmt, fps=a.fps,
                                  max_frames=a.max_frames, range_mode=a.range_mode, crf=a.crf)
    except (BundleError, KeyError, ValueError, OSError) as e:  # OSError: cannot write out
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"lcaviz animate: error: {msg}", file=sys.stderr)
        return 2
    if info["frames"] < info["n_rows"]:
        print(f"note: {info['n_rows']:,} stored rows, showing {info['frames']:,} evenly spaced "
              f"ones (--max-frames {a.max_frames}); the rows in between are left out")
    lim = "per frame" if info["limit"] is None else f"+/-{info['limit']:.3g} fixed"
    print(f"wrote {out} ({info['format']}, {info['frames']} frames of {info['width']}x"
          f"{info['height']}, rows {info['rows'][0]}..{info['rows'][1]}, range {lim})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
