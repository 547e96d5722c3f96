"""Compare page: one training example (by its index in the training split; or a validation
example, by its index in the validation split) across the runs that track it — its loss and
cumulative per-example LCA on the page's shared axis."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dash import dcc, html

from lcaviz.app import ids
from lcaviz.app.pages.components import graph_card, labelled, radio
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.examples import example_runs_figure
from lcaviz.figures.theme import empty_figure

_ERRORS = (RunPathError, BundleError, OSError)
HIDDEN = {"display": "none"}


def examples_card() -> html.Div:
    """The card of the overlays (hidden unless a compared run tracks examples)."""
    ctl = [labelled("training example #", dcc.Input(
        id=ids.CMP_EX_INDEX, type="number", min=0, step=1, debounce=True, className="num")),
        html.Span(labelled("split", radio(ids.CMP_EX_SPLIT, [("train", "training"),
                                                             ("val", "validation")], "train")),
                  id=ids.CMP_EX_SPLIT_WRAP, style=HIDDEN),
        html.Span(id=ids.CMP_EX_NOTE, className="muted small", role="status")]
    return html.Div(graph_card(ids.CMP_EXAMPLE, "Same training example in every run that "
                                                "tracks it (per-example LCA)", controls=ctl,
                               page="compare"), id="cmp-sec-examples")


def _tracked(state: AppState, run_ids: list[str], split: str = "train"):
    """``(run id, bundle, key)`` of the runs with per-example LCA of ``split``."""
    out = []
    for rid in run_ids:
        try:
            b, key = state.open(rid)
        except _ERRORS:
            continue
        has = getattr(b, "has_val_examples" if split == "val" else "has_examples", False)
        if has:
            out.append((rid, b, key))
    return out


def split_style(state: AppState, run_ids: list[str]) -> dict:
    """The split choice: shown when a compared run tracks validation examples."""
    return {} if _tracked(state, run_ids, "val") else HIDDEN


def section_state(state: AppState, run_ids: list[str]):
    """``(style, default training index, note)``: the smallest index every tracking run
    shares (else the first run's first), hidden when no run tracks examples."""
    runs = _tracked(state, run_ids)
    if not runs:
        return HIDDEN, None, ""
    sets = [set(b.example_index().tolist()) for _, b, _ in runs]
    common = set.intersection(*sets)
    if common:
        return {}, int(min(common)), f"{len(common):,} examples are tracked by all " \
                                     f"{len(runs)} runs that track examples"
    return {}, int(min(sets[0])), "no example is tracked by every run"


def example_across_runs(state: AppState, run_ids: list[str], index, xaxis: str,
                        split: str = "train") -> go.Figure:
    """The figure (``xaxis``: "iteration" or "fraction"; ``split``: "train" or "val")."""
    split = "val" if split == "val" else "train"
    what = "validation" if split == "val" else "training"
    if index is None or index == "":
        return empty_figure(f"Type a {what} example's index.", height=260)
    try:
        index = int(index)
    except (TypeError, ValueError):
        return empty_figure(f"A {what} example's index is a whole number.", height=260)
    curves, missing, label = [], [], None
    for rid, b, key in _tracked(state, run_ids, split):
        pos = np.flatnonzero(b.example_index(split=split) == index)
        if not len(pos):
            missing.append(rid)
            continue
        p = int(pos[0])

        def read(b=b, p=p):
            rows = b.example_lca_rows(None, sel=[p], split=split)[:, 0, :]
            loss = b.example_loss(None, sel=[p], split=split)
            last = b.example_loss_last(sel=[p], split=split)
            # the running total from 0 where the first row starts
            return (np.cumsum([0.0, *np.nan_to_num(rows).sum(axis=1)]),
                    None if loss is None else loss[:, 0], np.nan if last is None else last[0])

        cum, loss, last = state.cached(("cmp_example", key, b.n_rows, split, p), read)
        w = b.row_windows[:len(cum) - 1]
        scale = 1.0 / max(b.n_iters, 1) if xaxis == "fraction" else 1.0
        labels = b.example_labels(split=split)
        label = label if labels is None or label is not None else int(labels[p])
        curves.append({"run": rid, "x": np.concatenate([w[:1, 0], w[:, 1]]) * scale,
                       "cumulative": cum,
                       "loss_x": np.append(w[:, 0], b.n_iters) * scale,
                       "loss": None if loss is None else np.append(loss, last)})
    missing += [r for r in run_ids if r not in {c["run"] for c in curves} | set(missing)]
    if not curves:
        return empty_figure(f"No compared run tracks {what} example #{index:,}.", height=260)
    name = ("validation " if split == "val" else "") + f"#{index:,}" + (
        "" if label is None else f" · label {label}")
    return example_runs_figure(curves, name=name, missing=missing,
                               xlabel="fraction of training" if xaxis == "fraction"
                               else "iteration")


def export_example(state: AppState, fmt: str, run_ids: list[str], index, xaxis: str,
                   split: str = "train"):
    """The download of the section's figure (None: nothing to download)."""
    from dash import dcc

    from lcaviz.app.security import safe_filename
    from lcaviz.figures.export import figure_csv, figure_image, has_data

    fig = example_across_runs(state, run_ids, index, xaxis, split)
    if not has_data(fig):
        return None
    name = safe_filename(f"compare-example-{index}", fmt)
    if fmt == "csv":
        return dcc.send_string(figure_csv(fig, {"runs": " ".join(run_ids),
                                                ("validation_example" if split == "val"
                                                 else "training_example"): index,
                                                "units": "nats (of the allocated loss)"}), name)
    return dcc.send_bytes(figure_image(fig, fmt), name)
