"""Export figures (PNG/SVG/PDF via Kaleido, CSV of the underlying data) and HTML reports.

(A GIF of the heatmap animation is not offered: it would need Pillow and one Kaleido render
per frame; the HTML report and per-frame PNGs cover the use.)

Kaleido 1.x drives a headless Chrome/Chromium found on PATH or named by ``BROWSER_PATH``; the
Debian ``chromium`` is used when nothing else is configured. Kaleido is not thread-safe, so
all image exports are serialised with one lock, and a persistent Kaleido server is started on
first use (a cold start costs seconds, a warm export ~0.2 s).
"""

from __future__ import annotations

import atexit
import base64
import csv
import html
import io
import os
import shutil
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from lcaviz.figures.theme import EXPORT_HEIGHT, EXPORT_WIDTH, PLOTLY_CONFIG

IMAGE_FORMATS = ("png", "svg", "pdf")
_LOCK = threading.Lock()
_server_started = False


def _ensure_browser() -> None:
    """Point Kaleido at the system Chromium unless the user chose a browser already."""
    if os.environ.get("BROWSER_PATH"):
        return
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            os.environ["BROWSER_PATH"] = found
            return


def _start_server() -> None:
    global _server_started
    if _server_started:
        return
    import kaleido

    try:
        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(_stop_server)
        _server_started = True
    except Exception:  # noqa: BLE001 - fall back to one browser per export
        _server_started = False


def _stop_server() -> None:
    try:
        import kaleido

        kaleido.stop_sync_server(silence_warnings=True)
    except Exception:  # noqa: BLE001 - interpreter shutdown
        pass


# sizes of a static export: (width px, height px or None = the figure's, font px, PNG scale);
# "paper column": 3.5 in wide at 300 dpi with 8-9 pt text, "slide": 16:9 with large text
EXPORT_SIZES = {"screen": (EXPORT_WIDTH, None, None, 2.0),
                "paper column": (504, 378, 10, 300 / 144),
                "paper page": (1008, 560, 12, 300 / 144),
                "slide": (1280, 720, 20, 1.5)}


def sized(fig: go.Figure, size: str | None) -> tuple[go.Figure, dict]:
    """A copy of ``fig`` laid out for an export size of :data:`EXPORT_SIZES` (unknown or
    None: "screen"), and the :func:`figure_image` keywords that go with it."""
    width, height, font, scale = EXPORT_SIZES.get(size or "screen", EXPORT_SIZES["screen"])
    out = go.Figure(fig)
    if font:
        out.update_layout(font={"size": font}, title_font_size=font + 2)
    return out, {"width": width, "height": height or out.layout.height or EXPORT_HEIGHT,
                 "scale": scale}


def figure_image(fig: go.Figure, fmt: str = "png", *, width: int | None = None,
                 height: int | None = None, scale: float = 2.0) -> bytes:
    """Render ``fig`` as PNG, SVG or PDF bytes.

    Args:
        fig: the figure.
        fmt: ``"png"``, ``"svg"`` or ``"pdf"``.
        width: pixels (default: the figure's width or ``EXPORT_WIDTH``).
        height: pixels (default: the figure's height or ``EXPORT_HEIGHT``).
        scale: pixel density for PNG.

    Raises:
        ValueError: unknown format.
        RuntimeError: no Chrome/Chromium is available to Kaleido.
    """
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}")
    _ensure_browser()
    width = width or fig.layout.width or EXPORT_WIDTH
    height = height or fig.layout.height or EXPORT_HEIGHT
    with _LOCK:
        _start_server()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pio.to_image(fig, format=fmt, width=width, height=height, scale=scale)


def _column(v) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, dict) and "bdata" in v:  # a typed-array spec
        arr = np.frombuffer(base64.b64decode(v["bdata"]), np.dtype(v["dtype"]))
        shape = v.get("shape")
        return arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr
    return np.asarray(v)


def figure_rows(fig: go.Figure) -> Iterable[list]:
    """Long-form rows ``[trace, x, y, z]`` of every trace's data (header first).

    A heatmap contributes one row per cell with its full-resolution pixel coordinates; a line
    or bar one row per point. This is the data behind the picture, not a screenshot of it.
    """
    yield ["trace", "x", "y", "value"]
    for k, tr in enumerate(fig.data):
        name = tr.name or f"trace{k}"
        if tr.type == "heatmap" and tr.z is not None:
            z = np.atleast_2d(_column(tr.z))
            x0, dx = tr.x0 or 0, tr.dx or 1
            y0, dy = tr.y0 or 0, tr.dy or 1
            for i in range(z.shape[0]):
                for j in range(z.shape[1]):
                    yield [name, x0 + j * dx, y0 + i * dy, float(z[i, j])]
            continue
        xs, ys = _column(getattr(tr, "x", None)), _column(getattr(tr, "y", None))
        if ys is None and xs is None:
            continue
        if ys is None:
            ys = np.full(len(xs), np.nan)
        if xs is None:
            xs = np.arange(len(ys))
        for x, y in zip(xs.tolist(), ys.tolist(), strict=False):
            if x is None and y is None:
                continue
            yield [name, x, y, ""]


# a cell a spreadsheet would read as a formula (OWASP "CSV injection"): =, +, -, @, and tab /
# carriage return, which some spreadsheets skip before looking for one
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(v):
    """``v`` for a CSV cell: text that would start a formula gets a leading ``'`` (read as
    text by spreadsheets); numbers and other values pass unchanged."""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def write_csv(rows: Iterable[Sequence]) -> str:
    """CSV text of ``rows``, every text cell made formula-safe (:func:`safe_cell`): names in
    a bundle (layers, tensors, classes, runs) come from whoever made it."""
    buf = io.StringIO()
    w = csv.writer(buf)
    for row in rows:
        w.writerow([safe_cell(v) for v in row])
    return buf.getvalue()


def figure_csv(fig: go.Figure, context: dict | None = None) -> str:
    """CSV text of :func:`figure_rows` (formula-safe); ``context`` (e.g. run, layer,
    iteration, mode, units) adds one column per key after ``trace,x,y,value``, the same in
    every row, so that the file says what it holds once it has left the page."""
    if not context:
        return write_csv(figure_rows(fig))
    keys, values = list(context), [context[k] for k in context]
    rows = figure_rows(fig)
    head = next(rows)
    return write_csv([[*head, *keys]] + [[*r, *values] for r in rows])


def has_data(fig: go.Figure) -> bool:
    """Whether :func:`figure_rows` has anything beyond its header (an empty panel: no)."""
    rows = figure_rows(fig)
    next(rows)
    return next(rows, None) is not None


def html_table(heading: str, header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """An HTML table (every cell escaped: names come from the bundle)."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<h2>{esc(heading)}</h2><table><tr>{head}</tr>{body}</table>"


def html_report(title: str, figures: Sequence[go.Figure], *, intro: str = "",
                captions: Sequence[str] | None = None,
                tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence]]] = ()) -> str:
    """A self-contained HTML page (plotly.js inlined, works offline) of ``figures``, each
    followed by its caption (how to read it), after ``tables`` ``(heading, header, rows)``
    (hyperparameters, summary numbers). Every text is escaped."""
    parts = []
    for k, fig in enumerate(figures):
        cap = captions[k] if captions and k < len(captions) and captions[k] else ""
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(k == 0),
                                 config=PLOTLY_CONFIG)
                     + (f"<p class='caption'>{html.escape(cap)}</p>" if cap else ""))
    esc = html.escape(title)
    intro_html = html.escape(intro)
    tables_html = "".join(f"<section class='table'>{html_table(*t)}</section>" for t in tables)
    body = "\n".join(f"<section>{p}</section>" for p in parts)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{esc}</title><style>body{{font-family:Helvetica,Arial,sans-serif;"
        "max-width:1100px;margin:24px auto;color:#222}section{margin:18px 0}"
        "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;"
        "border-bottom:1px solid #ddd;text-align:left}th{background:#f6f7f9}"
        ".caption{color:#555;font-size:13px;max-width:900px}</style>"
        f"</head><body><h1>{esc}</h1><p>{intro_html}</p>{tables_html}{body}</body></html>"
    )
