"""Compare-page views as plain functions (``state`` first): which runs open, which layers can
be matched, the per-run heatmaps, the overlays and their exports.

Layers are matched by name only within one architecture (the config's ``net``): LeNet's
``fc1`` (400 → 120) is not MNIST-FC's ``fc1`` (784 → 100), so with several networks the layer
list is per network and a run of another network says "different network" instead of
drawing its same-named layer beside it.
"""

from __future__ import annotations

import json

import dash
import numpy as np
from dash import dcc, html

from lcaviz.analysis import helping, layers
from lcaviz.app import ids
from lcaviz.app.frames import stream_descriptor
from lcaviz.app.pages.components import error_card
from lcaviz.app.pages.run_views import Controls, heatmap
from lcaviz.app.queries import fixed_limit, layer_tensors, series
from lcaviz.app.security import RunPathError, safe_filename
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.compare import layer_totals_figure, overlay_figure
from lcaviz.figures.export import figure_csv, figure_image, has_data
from lcaviz.figures.heatmap_axes import heatmap_axes
from lcaviz.figures.theme import empty_figure

HEAT_GRAPH = "cmp-heat-{}"  # export name of the k-th heatmap
_ERRORS = (RunPathError, BundleError, OSError)
HIDDEN = {"display": "none"}


def net_of(b) -> str:
    """The architecture a run was made with (config ``net``; "" when not recorded)."""
    return str(b.config.get("net", "") or "")


def layer_value(net: str | None, layer: str) -> str:
    """Dropdown value of a layer: its name, or ``["net", "layer"]`` (JSON) when several
    networks are compared."""
    return layer if net is None else json.dumps([net, layer])


def parse_layer(value: str | None) -> tuple[str | None, str | None]:
    """``(net or None, layer name)`` from a dropdown value of :func:`layer_value`."""
    if not value:
        return None, None
    if value.startswith("["):
        try:
            net, layer = json.loads(value)
            return str(net), str(layer)
        except (ValueError, TypeError):
            return None, value
    return None, value


def _layer_options(names: list[list[str]], nets: list[str]) -> list[dict]:
    """Per network (first-seen order): layers of every run of it, then the others (marked)."""
    groups = list(dict.fromkeys(nets))
    multi = len(groups) > 1
    opts = []
    for g in groups:
        member = [n for n, net in zip(names, nets, strict=True) if net == g]
        common = [n for n in member[0] if all(n in other for other in member)]
        rest = list(dict.fromkeys(n for ln in member for n in ln if n not in common))
        tag = f" ({g or 'unnamed network'})" if multi else ""
        key = g if multi else None
        opts += [{"label": f"{n}{tag}", "value": layer_value(key, n)} for n in common]
        opts += [{"label": f"{n}{tag} (not in every {'run of it' if multi else 'run'})",
                  "value": layer_value(key, n)} for n in rest]
    return opts


def check_runs(state: AppState, run_ids: list[str]):
    """Open every run; returns ``(ok ids, cards, layer options, default layer)``.

    Cards are errors (fewer than two runs, unreadable ones) and, when the runs are different
    networks, a note that layers are matched within each network only.
    """
    ok, cards, names, nets = [], [], [], []
    if len(run_ids) < 2:
        cards.append(error_card("Choose 2–4 runs on the runs page.", "Nothing to compare"))
    for rid in run_ids:
        try:
            b, _ = state.open(rid)
        except _ERRORS as e:
            cards.append(error_card(str(e), f"Cannot open {rid}"))
            continue
        ok.append(rid)
        names.append(list(b.layer_names))
        nets.append(net_of(b))
    groups = list(dict.fromkeys(nets))
    if len(groups) > 1:
        cards.append(html.Div([
            html.Strong("Different networks: "),
            f"{', '.join(g or '(unnamed)' for g in groups)}. Layers are matched by name only "
            "within one network (LeNet's fc1 is not MNIST-FC's fc1); runs of another network "
            "say “different network” instead."], className="info-card"))
    opts = _layer_options(names, nets) if ok else []
    return ok, cards, opts, opts[0]["value"] if opts else None


def page_state(state: AppState, run_ids: list[str]):
    """``(cards, layer options, layer value, body style)``: the body (slider, heatmaps,
    overlays) is hidden unless at least two runs open, so an error never sits above empty
    axes."""
    ok, cards, opts, default = check_runs(state, run_ids)
    return cards, opts, default, {} if len(ok) >= 2 else HIDDEN


def frame_of(b, position: float, xaxis: str) -> int:
    """Row of bundle ``b`` at the shared position: an iteration, or a fraction (0–1) of its
    own training (the player's timeline)."""
    if b.n_rows == 0:
        return 0
    t = position if xaxis == "iteration" else round(float(position) * max(b.n_iters - 1, 0))
    return b.row_of_iteration(int(min(max(t, 0), max(b.n_iters - 1, 0))))


def _reference_net(state: AppState, run_ids: list[str]) -> str | None:
    for rid in run_ids:
        try:
            return net_of(state.open(rid)[0])
        except _ERRORS:
            continue
    return None


def _wanted(state: AppState, run_ids: list[str], layer_value_) -> tuple[str | None, str]:
    """``(network whose layer is shown or None, layer name)`` for a layer menu value: with
    mixed networks and no network named, the first run's."""
    want_net, layer_name = parse_layer(layer_value_)
    if want_net is None:  # one network: match by name; mixed without a choice: the first's
        nets = set()
        for rid in run_ids:
            try:
                nets.add(net_of(state.open(rid)[0]))
            except _ERRORS:
                continue
        want_net = _reference_net(state, run_ids) if len(nets) > 1 else None
    return want_net, layer_name


def _mismatch(b, rid: str, want_net: str | None, layer_name: str) -> str | None:
    """Why run ``rid`` shows no heatmap of this layer (None when it does)."""
    if want_net is not None and net_of(b) != want_net:
        return (f"{rid}: different network ({net_of(b) or 'unnamed'}, not {want_net}); its "
                f"{layer_name} is another layer")
    if layer_name not in b.layer_names:
        return f"{rid} has no layer {layer_name!r}"
    return None


def streams(state: AppState, run_ids: list[str], mode, layer_value_, scale: str = "shared",
            norm: str = "per_it") -> list[dict]:
    """One player stream per run (or ``{"error", "run"}``).

    Args:
        scale: ``"shared"``: one colour range for all runs (the largest of theirs), so their
            LCA compare directly; ``"own"``: each run its own range.
        norm: ``"per_it"``: in "this iteration" mode a row that sums several iterations (a
            ``--lca-stride`` window) is drawn divided by its length, so a run with window rows
            and one with per-iteration rows share a meaningful scale; ``"sum"``: as stored.
    """
    mode = mode or "row"
    per_it = norm != "sum" and mode == "row"
    want_net, layer_name = _wanted(state, run_ids, layer_value_)
    out = []
    for rid in run_ids:
        try:
            b, key = state.open(rid)
            why = _mismatch(b, rid, want_net, layer_name)
            if why:
                out.append({"error": why, "run": rid})
                continue
            layer = b.layer_names.index(layer_name)
            # the fixed range is this page's own (per iteration where asked), not the run page's
            s = stream_descriptor(state, rid, layer, mode, 10, "frame", "auto", None)
            if s["has_rows"] and b.n_rows:
                s["zmax"] = fixed_limit(state, key, b, layer, s["items"],
                                        layer_tensors(b, layer), mode, 10, per_iteration=per_it)
        except _ERRORS as e:
            out.append({"error": str(e), "run": rid})
            continue
        s["range_mode"], s["per_iteration"] = "fixed", per_it
        if s["has_rows"]:
            s["figure"] = heatmap_axes(s["items"], uirevision=f"cmp|{rid}|{layer}"
                                       ).to_plotly_json()
        else:
            s["error"] = f"{rid}: {layer_name} has no per-parameter rows (--lca-layers)"
        out.append(s)
    limits = [s["zmax"] for s in out if s.get("zmax")]
    for s in out:
        if "zmax" not in s:
            continue
        s["own_zmax"] = s["zmax"]
        if scale != "own" and limits:
            s["zmax"] = max(limits)  # one colour range: the runs' LCA compare directly
        s["scale_note"] = "shared" if scale != "own" else "this run"
    return out


def heatmaps(state: AppState, run_ids: list[str], position, xaxis, mode, layer_value_):
    """One server-side heatmap figure per run of the chosen layer, at the shared position,
    with a shared colour limit (the exports)."""
    want_net, layer_name = _wanted(state, run_ids, layer_value_)
    figs, limits = [], []
    for rid in run_ids:
        try:
            b, _ = state.open(rid)
        except _ERRORS as e:
            figs.append(empty_figure(str(e)))
            continue
        why = _mismatch(b, rid, want_net, layer_name)
        if why:
            figs.append(empty_figure(why.replace("; its", "<br>its")))
            continue
        c = Controls.from_dict({"run_id": rid, "row": frame_of(b, position or 0, xaxis),
                                "mode": mode, "layer": b.layer_names.index(layer_name)})
        fig = heatmap(state, c)[0]
        fig.update_layout(title_text=f"{rid}<br><sup>{fig.layout.title.text}</sup>")
        figs.append(fig)
        if fig.layout.coloraxis.cmax:
            limits.append(float(fig.layout.coloraxis.cmax))
    z = max(limits) if limits else None
    for fig in figs:
        if z and fig.layout.coloraxis.cmax:
            fig.update_layout(coloraxis={"cmin": -z, "cmax": z})
    return figs


def _x(b, n: int, xaxis: str) -> np.ndarray:
    t = np.arange(n)
    return t / max(b.n_iters, 1) if xaxis == "fraction" else t


def overlays(state: AppState, run_ids: list[str], position, xaxis):
    """Loss, % helping and per-layer totals (per network) of all runs; the time marker at the
    shared position (the player moves it on screen)."""
    loss, helps, totals, nets = [], [], [], []
    for rid in run_ids:
        try:
            b, key = state.open(rid)
        except _ERRORS:
            continue
        lt = series(state, key, b, "loss_train")
        loss.append((rid, _x(b, len(lt), xaxis), lt))
        hs = state.cached(("help_series", key), lambda b=b: helping.help_series(b))
        # % of the nonzero LCA (Table 1), as the run page and the summary count it
        helps.append((rid, _x(b, len(hs), xaxis), hs["pct_help"].to_numpy()))
        lt_df = state.cached(("totals", key), lambda b=b: layers.layer_totals(b))
        totals.append((rid, list(b.layer_names), lt_df["total"].to_numpy()))
        nets.append(net_of(b))
    xl = "fraction of training" if xaxis == "fraction" else "iteration"
    mark = float(position or 0)
    loss_fig = overlay_figure(loss, title="Train loss", xlabel=xl, ylabel="loss", marker=mark)
    if all(np.nanmin(y) >= 0 for _, _, y in loss if len(y)):
        loss_fig.update_yaxes(rangemode="nonnegative")
    return (loss_fig,
            overlay_figure(helps, title="% helping of nonzero LCA (as on the run page)",
                           xlabel=xl, ylabel="% helping (of nonzero)", marker=mark),
            layer_totals_figure(totals, nets=nets))


def export(state: AppState, trigger, run_ids, position, xaxis, mode, layer_name):
    """Download of one compare figure (overlays or the k-th heatmap) as PNG/SVG/PDF/CSV."""
    if not isinstance(trigger, dict) or trigger.get("fmt") not in ids.EXPORT_FORMATS:
        return dash.no_update
    graph = str(trigger.get("graph"))
    heat = {HEAT_GRAPH.format(k): k for k in range(len(run_ids))}
    if graph in heat:
        fig = heatmaps(state, run_ids, position, xaxis, mode, layer_name)[heat[graph]]
    else:
        figs = dict(zip((ids.CMP_LOSS, ids.CMP_HELP, ids.CMP_LAYER_TOTALS),
                        overlays(state, run_ids, position, xaxis), strict=True))
        fig = figs.get(graph)
    if fig is None or not has_data(fig):  # an empty panel: nothing to download
        return dash.no_update
    name = safe_filename(f"compare-{graph}", trigger["fmt"])
    if trigger["fmt"] == "csv":
        context = {"runs": " ".join(run_ids)}
        if graph in heat:
            context.update(run=run_ids[heat[graph]], layer=parse_layer(layer_name)[1],
                           mode=mode or "row")
        return dcc.send_string(figure_csv(fig, context), name)
    return dcc.send_bytes(figure_image(fig, trigger["fmt"]), name)
