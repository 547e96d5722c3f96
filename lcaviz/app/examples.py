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
"""

from __future__ import annotations

import json

import numpy as np
from flask import Response, request

from lcaviz.analysis.examples import (
    MAX_K,
    class_histogram,
    histogram_edges,
    scope_columns,
    top_examples,
)
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


def has_examples(b) -> bool:
    """Whether the bundle stores per-example LCA (``lca_example``)."""
    return bool(getattr(b, "has_examples", False))


def scope_options(b) -> list[dict]:
    """The "examples of" menu: all layers, each layer, and the run's heads (disabled: the
    per-example values are stored per layer)."""
    opts = [{"label": "all layers (their sum)", "value": "all"}]
    opts += [{"label": str(n), "value": f"layer:{i}"} for i, n in enumerate(b.layer_names)]
    if getattr(b, "has_groups", False):
        opts += [{"label": f"{g} (per-example values are stored per layer)",
                  "value": f"group:{g}", "disabled": True} for g in b.group_names]
    return opts


def rows_per_block(b) -> int:
    """Rows of one block within :data:`READ_BUDGET_BYTES` (at least 1)."""
    n_e, n_l = int(b.n_examples), max(int(b.n_layers), 1)
    return max(1, min(BLOCK_ROWS, READ_BUDGET_BYTES // max(8 * n_e * n_l, 1)))


def class_names(b, labels: np.ndarray | None = None) -> list[str] | None:
    """Names of the histogram's classes (None when the targets are not class labels);
    ``labels``: the run's :meth:`example_labels`, if already read."""
    labels = b.example_labels() if labels is None else labels
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


def examples_stream(state: AppState, run_id: str, scope: str, k: int) -> dict:
    """What the browser needs to fetch and draw the section (JSON-able)."""
    from urllib.parse import quote

    b, key = state.open(run_id)
    with b.held():
        cols = scope_columns(scope, b.n_layers)
        k = max(1, min(int(k or DEFAULT_K), MAX_K))
        names = class_names(b)
        return {
            "key": f"{run_id}|{b.created}|{scope}|{k}|{b.n_rows}", "run": run_id,
            "url": f"{ROUTE}?run={quote(run_id, safe='')}&scope={quote(scope, safe='')}&k={k}",
            "scope": scope, "scope_name": scope_name(b, cols), "k": k,
            "R": int(b.n_rows), "T": int(b.n_iters), "block": rows_per_block(b),
            "starts": b.row_windows[:, 0].tolist(), "ends": b.row_windows[:, 1].tolist(),
            "n_examples": int(b.n_examples), "classes": names,
            "colors": [class_color(i) for i in range(len(names or [None]) + 1)],
            "status": b.status,
        }


def scope_name(b, cols) -> str:
    """``"all layers"`` or the layers' names, for titles."""
    return "all layers" if len(cols) == b.n_layers and b.n_layers > 1 else \
        ", ".join(str(b.layer_names[c]) for c in cols)


def renderings(b, positions) -> dict[int, dict]:
    """:func:`render_example` of the tracked examples at ``positions`` (into N_e)."""
    pos = np.unique(np.asarray(list(positions), np.int64))
    if not len(pos):
        return {}
    index = b.example_index()[pos]
    labels = b.example_labels()
    thumbs = b.example_thumbnails(pos)
    texts = b.example_texts(pos)
    run = {"dataset": str(b.config.get("dataset", "")), "net": str(b.config.get("net", ""))}
    flipped = flipped_labels(b)
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


def examples_block(b, scope: str, k: int, r0: int, r1: int) -> dict:
    """The section's frames of rows ``r0:r1`` (JSON-able; see the module docstring)."""
    if not 0 <= r0 < r1 <= b.n_rows:
        raise ValueError(f"rows {r0}:{r1} are not in this run ({b.n_rows} rows)")
    cols = scope_columns(scope, b.n_layers)
    k = max(1, min(int(k), MAX_K))
    rows = np.asarray(b.example_lca_rows(list(range(r0, r1))), np.float64)
    before = b.example_cumsum_upto(r0 - 1) if r0 > 0 else None
    tops = top_examples(rows, cols, k, before)
    labels = b.example_labels()
    n_cls = len(class_names(b, labels) or [])
    vals = rows[..., cols].sum(axis=-1)
    cum = np.cumsum(vals, axis=0) + (0.0 if before is None else
                                     np.asarray(before, np.float64)[:, cols].sum(axis=-1))
    frames, shown = [], set()
    for i, t in enumerate(tops):
        frame = {name: tk.as_dict() for name, tk in t.items()}
        for tk in t.values():
            shown.update(tk.helped.tolist())
            shown.update(tk.hurt.tolist())
        frame["hist"] = {}
        for name, v in (("row", vals[i]), ("cumulative", cum[i])):
            edges = histogram_edges(v, HIST_BINS)
            frame["hist"][name] = {"lim": float(edges[-1]),
                                   "counts": class_histogram(v, labels, n_cls, edges).tolist()}
        frames.append(frame)
    return {"r0": r0, "r1": r1, "frames": frames,
            "examples": {str(p): r for p, r in renderings(b, shown).items()}}


def _answer(state: AppState, q) -> tuple[dict, int]:
    """The block a request asks for, and the bytes of float64 values it read."""
    b, _ = state.open(q.get("run", ""))
    with b.held():
        if not has_examples(b):
            raise ValueError("this run stores no per-example LCA")
        r0 = max(0, int(q.get("r0", 0)))
        r1 = min(int(q.get("r1", r0 + 1)), b.n_rows, r0 + rows_per_block(b))
        block = examples_block(b, q.get("scope", "all"), int(q.get("k", DEFAULT_K)), r0, r1)
        return block, (block["r1"] - r0) * int(b.n_examples) * int(b.n_layers) * 8


def register_route(server, state: AppState) -> None:
    """``GET /lcaviz/examples?run=&scope=&k=&r0=&r1=`` (JSON)."""
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
