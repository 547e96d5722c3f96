"""``Run.figure(name, ...)``: the dashboard's own figure builders, called for one run.

The run page's builders (:mod:`lcaviz.app.pages.run_views`, ``run_analysis``, ``run_sync``)
take the app state and the page's controls; here a :class:`RunState` lends them the
:class:`~lcaviz.api.Run`'s open bundle and :class:`Controls` are made from keyword options, so
a figure in a notebook is exactly the one on screen (and exports with ``fig.write_image``).
The background jobs of the page (value scan, shift test) run synchronously here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from lcaviz.app.pages import run_analysis, run_sync, run_views
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.queries import param_label
from lcaviz.app.state import AppState
from lcaviz.figures.theme import style

if TYPE_CHECKING:
    from lcaviz.api import Run


class RunState(AppState):
    """An :class:`AppState` over already-open runs, keyed by name (no runs directory: the
    notebook user opened these files themselves, so no run id from a browser is resolved)."""

    def __init__(self, runs: Mapping[str, Run]):
        super().__init__(runs_dir=Path("."))
        self.runs = dict(runs)

    def open(self, run_id: str):
        run = self.runs[run_id]
        return run.bundle, (str(run.path), *run._stamp)

    def close(self) -> None:
        self.jobs.shutdown()


def state_of(run: Run) -> RunState:
    """The run's own (cached) state: its figures share one bounded array cache."""
    st = getattr(run, "_figure_state", None)
    if st is None:
        st = run._figure_state = RunState({run.name: run})
    return st


def controls(run: Run, iteration: int | None = None, **kw: Any) -> Controls:
    """Page controls at ``iteration`` (default: the last stored row)."""
    b = run.bundle
    row = max(b.n_rows - 1, 0) if iteration is None else run.row_of(iteration)
    return Controls.from_dict({"run_id": run.name, "row": row, **kw})


def _heatmap(run, layer: int | str = 0, iteration: int | None = None, mode: str = "row",
             window: int = 10, fixed_range: bool = True, full_resolution: bool = False,
             zoom: list | None = None) -> go.Figure:
    c = controls(run, iteration, layer=run.bundle.layer_index(layer), mode=mode, window=window,
                 range_mode="fixed" if fixed_range else "frame",
                 resolution="full" if full_resolution else "auto", zoom=zoom)
    return run_views.heatmap(state_of(run), c)[0]


def _bars(run, by: str = "layer", iteration: int | None = None, per_param: bool = False
          ) -> go.Figure:
    c = controls(run, iteration, bars_by=by, bars_scope="total" if iteration is None else
                 "upto", bars_norm="per_param" if per_param else "raw")
    return run_views.layer_bars(state_of(run), c)


def _curves(run, cumulative: bool = False, by: str = "layer", iteration: int | None = None
            ) -> go.Figure:
    c = controls(run, iteration, curves_cumulative=cumulative, bars_by=by)
    return run_views.layer_curves(state_of(run), c)


def _loss(run, log: bool = False, iteration: int | None = None) -> go.Figure:
    return run_views.loss(state_of(run), controls(run, iteration, loss_log=log))


def _residual(run, log: bool = False, iteration: int | None = None) -> go.Figure:
    return run_views.residual(state_of(run), controls(run, iteration, residual_log=log))


def _simple(builder: Callable) -> Callable[..., go.Figure]:
    def build(run, iteration: int | None = None) -> go.Figure:
        return builder(state_of(run), controls(run, iteration))

    build.__doc__ = builder.__doc__
    return build


def _drill(run, param: int, iteration: int | None = None) -> go.Figure:
    """One parameter (flat index, as ``run.bundle.params`` offsets count) over training."""
    c = controls(run, iteration, drill={"flat": int(param), "label": _param_name(run, param)})
    return run_views.drill(state_of(run), c)


def _param_name(run, flat: int) -> str:
    """``"fc1.weight[3, 17]"`` of a flat parameter index (``"#i"`` outside the run)."""
    p = run.bundle.params
    k = int(np.searchsorted(p["offset"].to_numpy(), int(flat), side="right")) - 1
    if not 0 <= int(flat) < run.bundle.n_params or k < 0:
        return f"#{int(flat)}"
    t = p.iloc[k]
    index = np.unravel_index(int(flat) - int(t["offset"]), tuple(t["shape"])) if t["shape"] \
        else ()
    return param_label(str(t["name"]), index)


def _scan(run) -> dict:
    st = state_of(run)
    _, key = st.open(run.name)
    return st.cached(("api-scan", key), lambda: run_analysis.value_scan_job(run.bundle))


def _histogram(run) -> go.Figure:
    return run_analysis.histogram_figure(_scan(run))


def _weibull(run, group: str = "sign") -> go.Figure:
    """``group``: ``"sign"`` (helping vs hurting), ``"layer_help"`` or ``"layer_hurt"``."""
    if group not in dict(run_analysis.GROUPS):
        raise ValueError(f"group={group!r}: use one of {', '.join(dict(run_analysis.GROUPS))}")
    return run_analysis.weibull_view(_scan(run), group)


def _synchrony(run, cls: int = 0, k: int = 20, shift: int = 2, resamples: int = 1000
               ) -> go.Figure:
    """The random-shift test's figure; ``fig.layout.meta`` holds its numbers."""
    x, _, _ = run_sync.class_curves(state_of(run), run.name)
    result = run_sync.sync_job(x, int(k), int(shift), int(resamples))
    fig = run_sync.test_view(result, cls)
    if result:
        fig.update_layout(meta={key: result[key] for key in (
            "p_value", "actual_total", "baseline_total_mean", "baseline_total_std",
            "n_resamples", "max_shift", "k")})
    return fig


def _peaks(run, cls: int = 0, k: int = 20) -> go.Figure:
    return run_sync.peaks_view(state_of(run), run.name, cls, k)


def _examples(run, top: int = 20, layer: str | None = None) -> go.Figure:
    """The examples whose loss change the training helped or hurt most (cumulative)."""
    df = run.examples(cumulative=True)  # NotInBundleError without per-example values
    total = df[layer] if layer else df.sum(axis=1)
    order = np.argsort(total.to_numpy())
    pick = np.concatenate([order[:top], order[-top:]]) if len(order) > 2 * top else order
    s = total.iloc[pick]
    fig = go.Figure(go.Bar(x=[str(i) for i in s.index], y=s.to_numpy(),
                           marker_color=np.where(s.to_numpy() < 0, "#2e7d32", "#c62828")))
    return style(fig, f"Cumulative LCA per example{f' — {layer}' if layer else ''}",
                 xlabel="example (training-set index)", ylabel="LCA (negative helps)")


FIGURES: dict[str, Callable[..., go.Figure]] = {
    "heatmap": _heatmap, "bars": _bars, "curves": _curves, "loss": _loss,
    "residual": _residual, "help": _simple(run_views.help_time),
    "help_layer": _simple(run_views.help_layer),
    "help_fraction": _simple(run_views.help_fraction), "histogram": _histogram,
    "weibull": _weibull, "synchrony": _synchrony, "peaks": _peaks, "drill": _drill,
    "lca_error": _simple(run_views.lca_error), "table_s1": _simple(run_views.table_s1),
    "train_val": _simple(run_views.train_val), "examples": _examples,
}


def run_figure(run: Run, name: str, **options: Any) -> go.Figure:
    """Build figure ``name`` of ``run`` (see :data:`FIGURES` for the names)."""
    try:
        build = FIGURES[name]
    except KeyError:
        raise ValueError(f"no figure {name!r}; figures are {', '.join(FIGURES)}") from None
    return build(run, **options)
