"""Per-example LCA for the run page's "Examples" section: the stream, the blocks, the route.

The section follows the player's frame without a server round trip per frame. Once per run /
scope / k the page gets a *stream* (:func:`examples_stream`: the rows' iterations, the classes
and their colours, the block size) and then fetches **blocks** of rows from
``GET /lcaviz/examples`` (:func:`examples_block`): for every row of the block the top-k
helped / hurt examples in that row and cumulatively up to it, both histograms by class, and
the renderings (thumbnail PNG, text or caption) of every example the block names. The browser
(``assets/lca_4_examples.js``) caches blocks and pages through them as the player moves, so a
frame costs at most one bounded request per block of :data:`BLOCK_ROWS` rows and none once
its block is cached.

A stream is of one ``split`` (training or validation examples,
:mod:`lcaviz.app.examples_scope`), one scope (a layer, all layers, a split group or a head)
and one window W: with the player's "sum over last W rows" the frames also hold the top-k and
histogram of the window sums (``window``), from two reads of at most a block each.
"""

from __future__ import annotations

import json

import numpy as np
from flask import Response, request

from lcaviz.analysis.examples import (
    MAX_K,
    class_histogram,
    histogram_edges,
    scope_values,
    top_examples,
    top_k_rows,
    window_values,
)
from lcaviz.app.examples_scope import checked_split, scope_source
from lcaviz.app.examples_scope import scope_options as scope_options  # noqa: PLC0414
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.example_render import Example, render_example
from lcaviz.figures.examples import class_color

ROUTE = "/lcaviz/examples"
BLOCK_ROWS = 32  # rows one request answers (the page asks block by block)
READ_BUDGET_BYTES = 32 * 2**20  # per-example values one request may read (float64)
HIST_BINS = 40
DEFAULT_K = 8
MAX_CLASSES = 256  # histogram stacks named at most (more: "other labels")
MAX_THUMB = 112  # pixels a side of a thumbnail sent to the page
MAX_WINDOW = 10**6  # rows of a window (the player's W); beyond: the whole run


def has_examples(b) -> bool:
    """Whether the bundle stores per-example LCA (``lca_example``)."""
    return bool(getattr(b, "has_examples", False))


def _n_of(b, split: str) -> int:
    return int(b.n_val_examples if split == "val" else b.n_examples)


def _columns_of(b, by: str) -> int:
    return max(len(b.example_group_names) if by == "group" else int(b.n_layers), 1)


def rows_per_block(b, split: str = "train", by: str = "layer", window: int = 1) -> int:
    """Rows of one block within :data:`READ_BUDGET_BYTES` (at least 1); half as many with a
    window (its earlier rows are a second read)."""
    per_row = 8 * _n_of(b, split) * _columns_of(b, by) * (2 if window > 1 else 1)
    return max(1, min(BLOCK_ROWS, READ_BUDGET_BYTES // max(per_row, 1)))


def checked_window(window) -> int:
    """The player's W as rows (1: no window)."""
    try:
        return max(1, min(int(window), MAX_WINDOW))
    except (TypeError, ValueError):
        return 1


def class_names(b, labels: np.ndarray | None = None, split: str = "train"
                ) -> list[str] | None:
    """Names of the histogram's classes (None when the targets are not class labels);
    ``labels``: the split's :meth:`example_labels`, if already read."""
    labels = b.example_labels(split=split) if labels is None else labels
    if labels is None:
        return None
    names = [str(c) for c in b.class_names]
    if not names:  # a label past MAX_CLASSES (a crafted bundle) is counted as "other labels"
        top = int(np.max(labels)) + 1 if len(labels) else 0
        names = [str(c) for c in range(max(0, min(top, MAX_CLASSES)))]
    return [f"class {n}" if n.isdigit() else n for n in names]


def small_thumbnail(img: np.ndarray) -> np.ndarray:
    """``img`` subsampled to at most :data:`MAX_THUMB` pixels a side (a bundle's images may be
    of any size; the page shows 56 px)."""
    step = -(-max(img.shape[:2]) // MAX_THUMB)
    return img[::step, ::step] if step > 1 else img


def examples_stream(state: AppState, run_id: str, scope: str, k: int, split: str = "train",
                    window: int = 1) -> dict:
    """What the browser needs to fetch and draw the section (JSON-able). ``window`` > 1: the
    player sums the last W rows, and so does "this frame" here."""
    from urllib.parse import quote

    b, key = state.open(run_id)
    with b.held():
        split = checked_split(b, split)
        src = scope_source(b, scope, split)
        k = max(1, min(int(k or DEFAULT_K), MAX_K))
        W = checked_window(window)
        names = class_names(b, split=split)
        return {
            "key": f"{run_id}|{b.created}|{split}|{scope}|{k}|{W}|{b.n_rows}", "run": run_id,
            "url": f"{ROUTE}?run={quote(run_id, safe='')}&scope={quote(scope, safe='')}&k={k}"
                   f"&split={split}&window={W}",
            "scope": scope, "scope_name": src.name, "k": k, "split": split, "window": W,
            "R": int(b.n_rows), "T": int(b.n_iters),
            "block": rows_per_block(b, split, src.by, W),
            "starts": b.row_windows[:, 0].tolist(), "ends": b.row_windows[:, 1].tolist(),
            "n_examples": _n_of(b, split), "classes": names,
            "colors": [class_color(i) for i in range(len(names or [None]) + 1)],
            "status": b.status,
        }


def renderings(b, positions, split: str = "train") -> dict[int, dict]:
    """:func:`render_example` of the tracked examples of ``split`` at ``positions``."""
    pos = np.unique(np.asarray(list(positions), np.int64))
    if not len(pos):
        return {}
    index = b.example_index(split=split)[pos]
    labels = b.example_labels(split=split)
    thumbs = b.example_thumbnails(pos, split=split)
    texts = b.example_texts(pos, split=split)
    run = {"dataset": str(b.config.get("dataset", "")), "net": str(b.config.get("net", "")),
           "split": split}  # a user's renderer: index is into this split
    flipped = flipped_labels(b) if split == "train" else {}  # label noise: training only
    out = {}
    for i, p in enumerate(pos.tolist()):
        r = render_example(Example(
            index=int(index[i]), label=None if labels is None else int(labels[p]),
            thumbnail=None if thumbs is None else small_thumbnail(thumbs[i]),
            text=None if texts is None else str(texts[i]), run=run))
        if int(index[i]) in flipped:  # a run made with --label-noise: its true label
            r["flipped"] = flipped[int(index[i])]
            r["caption"] += f" (was {r['flipped']})"
        out[p] = r
    return out


def flipped_labels(b) -> dict[int, int]:
    """Training index → true label of the examples whose label the run flipped."""
    noise = b.label_noise() if hasattr(b, "label_noise") else None
    if not noise:
        return {}
    return dict(zip(noise["flipped"].tolist(), noise["original"].tolist(), strict=True))


def _earlier(b, src, split: str, r0: int, r1: int, W: int, n: int) -> np.ndarray:
    """(r1 − r0, N) scope values of Σ rows 0..r−W for each r of the block (0 where r < W):
    one cumulative read and at most one block of rows."""
    out = np.zeros((r1 - r0, n))
    a, e = max(r0 - W, 0), r1 - W  # rows r − W of the block that exist
    if e <= 0:
        return out
    kw = {"split": split, "by": src.by}
    base = scope_values(b.example_cumsum_upto(a - 1, **kw), src.cols) if a > 0 else 0.0
    cum = np.cumsum(scope_values(b.example_lca_rows(list(range(a, e)), **kw), src.cols),
                    axis=0) + base
    out[r1 - r0 - (e - a):] = cum
    return out


def examples_block(b, scope: str, k: int, r0: int, r1: int, split: str = "train",
                   window: int = 1) -> dict:
    """The section's frames of rows ``r0:r1`` (JSON-able; see the module docstring)."""
    if not 0 <= r0 < r1 <= b.n_rows:
        raise ValueError(f"rows {r0}:{r1} are not in this run ({b.n_rows} rows)")
    split = checked_split(b, split)
    src, W = scope_source(b, scope, split), checked_window(window)
    kw = {"split": split, "by": src.by}
    k = max(1, min(int(k), MAX_K))
    rows = np.asarray(b.example_lca_rows(list(range(r0, r1)), **kw), np.float64)
    before = b.example_cumsum_upto(r0 - 1, **kw) if r0 > 0 else None
    tops = top_examples(rows, src.cols, k, before)
    labels = b.example_labels(split=split)
    n_cls = len(class_names(b, labels, split) or [])
    vals = scope_values(rows, src.cols)
    base = np.zeros(vals.shape[1]) if before is None else scope_values(before, src.cols)
    cum = np.cumsum(vals, axis=0) + base
    series = {"row": vals, "cumulative": cum}
    if W > 1:
        series["window"] = window_values(vals, base, _earlier(b, src, split, r0, r1, W,
                                                              vals.shape[1]))
        for t, tk in zip(tops, top_k_rows(series["window"], k), strict=True):
            t["window"] = tk
    frames, shown = [], set()
    for i, t in enumerate(tops):
        frame = {name: tk.as_dict() for name, tk in t.items()}
        for tk in t.values():
            shown.update(tk.helped.tolist())
            shown.update(tk.hurt.tolist())
        frame["hist"] = {}
        for name, v in series.items():
            edges = histogram_edges(v[i], HIST_BINS)
            frame["hist"][name] = {"lim": float(edges[-1]), "counts": class_histogram(
                v[i], labels, n_cls, edges).tolist()}
        frames.append(frame)
    return {"r0": r0, "r1": r1, "split": split, "window": W, "frames": frames,
            "examples": {str(p): r for p, r in renderings(b, shown, split).items()}}


def _answer(state: AppState, q) -> tuple[dict, int]:
    """The block a request asks for, and the bytes of float64 values it read."""
    b, _ = state.open(q.get("run", ""))
    with b.held():
        if not has_examples(b):
            raise ValueError("this run stores no per-example LCA")
        split = checked_split(b, q.get("split", "train"))
        scope, W = q.get("scope", "all"), checked_window(q.get("window", 1))
        by = scope_source(b, scope, split).by
        r0 = max(0, int(q.get("r0", 0)))
        r1 = min(int(q.get("r1", r0 + 1)), b.n_rows, r0 + rows_per_block(b, split, by, W))
        block = examples_block(b, scope, int(q.get("k", DEFAULT_K)), r0, r1, split, W)
        per_row = _n_of(b, split) * _columns_of(b, by) * 8 * (2 if W > 1 else 1)
        return block, (block["r1"] - r0) * per_row


def register_route(server, state: AppState) -> None:
    """``GET /lcaviz/examples?run=&scope=&k=&r0=&r1=&split=&window=`` (JSON)."""
    from lcaviz.app.frames import FRAME_WORKERS
    from lcaviz.app.jobs import trim_heap

    def examples() -> Response:
        try:
            with FRAME_WORKERS:  # shares the frame requests' bound on concurrent reads
                body, read = _answer(state, request.args)
            if read > READ_BUDGET_BYTES // 4:  # glibc keeps big freed blocks: give them back
                trim_heap()
        except (RunPathError, ValueError) as e:
            return Response(str(e), status=400, mimetype="text/plain")
        except (BundleError, OSError, KeyError) as e:
            return Response(f"cannot read this run: {state.redact(str(e))}", status=404,
                            mimetype="text/plain")
        return Response(json.dumps(body), mimetype="application/json",
                        headers={"Cache-Control": "no-store"})

    server.add_url_rule(ROUTE, "lcaviz_examples", examples)
