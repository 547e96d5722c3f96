"""Arrange parameter tensors as 2-D images, as in the paper's Fig. 2 (pure numpy).

* a fully connected weight ``(out, in)`` is an ``out x in`` matrix;
* a conv weight ``(o, i, kh, kw)`` is a grid of ``kh x kw`` blocks, output channels as rows
  and input channels as columns, i.e. an image of shape ``(o*kh, i*kw)``;
* a 3-d weight ``(a, b, c)`` is its ``a`` slices side by side, each a ``b x c`` block, i.e. an
  image of shape ``(b, a*c)``: a stack of attention heads ``(heads, d_in, d_out)`` reads like
  the fused ``d_in x (heads*d_out)`` projection, one head per block (a Conv1d weight
  ``(out, in, k)`` shows one ``in x k`` filter per block); higher ranks keep axis 0 as rows;
* biases and other 1-D tensors are ``1 x n`` strips.

Large images are shown as exact block sums so that the colour of a cell is the total LCA of
the parameters it covers.
"""

from __future__ import annotations

import math

import numpy as np


def image_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Shape of the 2-D image of a tensor of ``shape``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 4:
        o, i, kh, kw = shape
        return o * kh, i * kw
    if len(shape) == 3:
        a, b, c = shape
        return b, a * c
    return shape[0], math.prod(shape[1:])


def block_size(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """Height and width of the blocks a tensor's image is made of (None: no blocks).

    A conv weight ``(o, i, kh, kw)`` is a grid of ``kh x kw`` blocks; a 3-d weight ``(a, b, c)``
    a row of ``a`` blocks of ``b x c``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        return shape[2], shape[3]
    if len(shape) == 3:
        return shape[1], shape[2]
    return None


def tensor_images(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`tensor_image` of many tensors of one shape at once.

    Args:
        values: (n, size) flat values, one tensor per row, in row-major order.
        shape: the tensors' shape.

    Returns:
        (n, *image_shape(shape)).
    """
    values = np.asarray(values)
    n = values.shape[0]
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        o, i, kh, kw = shape
        # (o, i, kh, kw) -> (o, kh, i, kw): rows run over (o, kh), columns over (i, kw)
        return values.reshape(n, *shape).transpose(0, 1, 3, 2, 4).reshape(n, o * kh, i * kw)
    if len(shape) == 3:
        a, b, c = shape
        # (a, b, c) -> (b, a, c): rows run over b, columns over (a, c)
        return values.reshape(n, *shape).transpose(0, 2, 1, 3).reshape(n, b, a * c)
    return values.reshape(n, *image_shape(shape))


def tensor_image(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Lay out the flat values of one tensor as its 2-D image (see module docstring).

    Args:
        values: the tensor's values, flat in row-major (``named_parameters``) order.
        shape: the tensor's shape.

    Returns:
        A 2-D array of shape :func:`image_shape` ``(shape)``.
    """
    return tensor_images(np.asarray(values)[None], shape)[0]


def pixel_to_index(shape: tuple[int, ...], row: int, col: int) -> tuple[int, ...]:
    """Tensor index of image pixel ``(row, col)`` (inverse of :func:`tensor_image`)."""
    shape = tuple(int(s) for s in shape)
    nrows, ncols = image_shape(shape)
    if not (0 <= row < nrows and 0 <= col < ncols):
        raise IndexError(f"pixel ({row}, {col}) outside image {nrows}x{ncols}")
    if len(shape) == 0:
        return ()
    if len(shape) == 1:
        return (int(col),)
    if len(shape) == 4:
        o, a = divmod(int(row), shape[2])
        i, b = divmod(int(col), shape[3])
        return o, i, a, b
    if len(shape) == 3:
        a, c = divmod(int(col), shape[2])
        return a, int(row), c
    return (int(row), *np.unravel_index(int(col), shape[1:]))


def flat_index(shape: tuple[int, ...], index: tuple[int, ...]) -> int:
    """Row-major flat position of ``index`` inside a tensor of ``shape``."""
    if len(shape) == 0:
        return 0
    return int(np.ravel_multi_index(tuple(int(i) for i in index), tuple(int(s) for s in shape)))


def choose_blocks(nrows: int, ncols: int, max_cells: int) -> tuple[int, int]:
    """Smallest block ``(by, bx)`` such that the block-summed image has <= ``max_cells`` cells.

    Square-ish blocks are preferred; an axis that is already short is not shrunk further.
    """
    if nrows * ncols <= max_cells or max_cells <= 0:
        return 1, 1
    f = math.sqrt(nrows * ncols / max_cells)
    by = max(1, min(nrows, math.ceil(f)))
    bx = max(1, math.ceil(ncols / max(1, max_cells // math.ceil(nrows / by))))
    while math.ceil(nrows / by) * math.ceil(ncols / bx) > max_cells:
        if by <= bx and by < nrows:
            by += 1
        else:
            bx += 1
    return by, bx


def block_sum(img: np.ndarray, by: int, bx: int) -> np.ndarray:
    """Exact sums over ``by x bx`` blocks (edge blocks are partial; the total is preserved).

    The result is float64 so that sums of many float32 values keep their precision.
    """
    img = np.asarray(img)
    if by == 1 and bx == 1:
        return img.astype(np.float64, copy=False)
    nrows, ncols = img.shape
    ny, nx = math.ceil(nrows / by), math.ceil(ncols / bx)
    padded = np.zeros((ny * by, nx * bx), np.float64)
    padded[:nrows, :ncols] = img
    return padded.reshape(ny, by, nx, bx).sum(axis=(1, 3))


def clip_region(region: tuple[int, int, int, int], nrows: int, ncols: int
                ) -> tuple[int, int, int, int]:
    """Clip a half-open ``(r0, r1, c0, c1)`` region to an ``nrows x ncols`` image (never empty)."""
    r0, r1, c0, c1 = (int(v) for v in region)
    r0, c0 = max(0, min(r0, nrows - 1)), max(0, min(c0, ncols - 1))
    r1, c1 = max(r0 + 1, min(r1, nrows)), max(c0 + 1, min(c1, ncols))
    return r0, r1, c0, c1


def symmetric_limit(values: np.ndarray, percentile: float = 99.5) -> float:
    """A symmetric colour limit: the ``percentile`` of ``|values|`` (never 0 or NaN)."""
    a = np.abs(np.asarray(values, np.float64).ravel())
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    lim = float(np.percentile(a, percentile))
    if not lim > 0:
        lim = float(a.max())
    return lim if lim > 0 else 1.0


def region_from_relayout(relayout: dict | None, nrows: int, ncols: int
                         ) -> tuple[int, int, int, int] | None:
    """Image region selected by a zoom on the main heatmap, from Plotly's ``relayoutData``.

    The heatmap's axes are in full-resolution pixel units (a cell of a block-summed image spans
    exactly its pixels), so the zoom box maps straight back to pixels. Autorange/reset -> None.
    """
    if not relayout or relayout.get("xaxis.autorange") or relayout.get("autosize"):
        return None
    try:
        x0, x1 = relayout["xaxis.range[0]"], relayout["xaxis.range[1]"]
    except KeyError:
        x0, x1 = -0.5, ncols - 0.5
    try:
        y0, y1 = relayout["yaxis.range[0]"], relayout["yaxis.range[1]"]
    except KeyError:
        y0, y1 = -0.5, nrows - 0.5
    if "xaxis.range[0]" not in relayout and "yaxis.range[0]" not in relayout:
        return None
    ylo, yhi = sorted((float(y0), float(y1)))
    xlo, xhi = sorted((float(x0), float(x1)))
    r0, r1 = max(0, math.floor(ylo + 0.5)), min(nrows, math.ceil(yhi + 0.5))
    c0, c1 = max(0, math.floor(xlo + 0.5)), min(ncols, math.ceil(xhi + 0.5))
    if r1 <= r0 or c1 <= c0 or (r0, r1, c0, c1) == (0, nrows, 0, ncols):
        return None
    return r0, r1, c0, c1
