"""``lcaviz.compare([run_a, run_b, ...])``: the compare page's figures and table in Python.

The figures come from :mod:`lcaviz.app.pages.compare_views` (the dashboard's compare page),
fed through a :class:`~lcaviz.api_figures.RunState` over the given runs, so layers are matched
the same way (by name, within one network).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from lcaviz.api import Run
from lcaviz.api_figures import RunState
from lcaviz.app.pages import compare_views

COMPARE_FIGURES = ("loss", "help", "layers", "heatmap")


class Comparison:
    """Two or more runs side by side (figures as on the compare page).

    Args:
        runs: :class:`Run` objects or bundle paths (paths are opened and closed with it).

    Raises:
        ValueError: fewer than two runs.
    """

    def __init__(self, runs: Sequence[Run | str | Path]):
        if len(runs) < 2:
            raise ValueError(f"compare needs at least two runs, got {len(runs)}")
        self.runs: list[Run] = []
        self._owned: list[Run] = []  # opened here from paths: closed by close()
        try:
            for r in runs:
                if not isinstance(r, Run):
                    r = Run(r)
                    self._owned.append(r)
                self.runs.append(r)
        except BaseException:
            self.close()
            raise
        self.names = _unique([r.name for r in self.runs])
        self._state = RunState(dict(zip(self.names, self.runs, strict=True)))

    def __enter__(self) -> Comparison:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<lcaviz.Comparison of {', '.join(self.names)}>"

    def close(self) -> None:
        """Close the runs this comparison opened from paths (not the ones it was given)."""
        for r in self._owned:
            r.close()

    def table(self, *, per_param: bool = False) -> pd.DataFrame:
        """Per-layer LCA totals of every run (:func:`lcaviz.analysis.compare_runs`)."""
        from lcaviz.analysis.layers import compare_runs

        return compare_runs([r.bundle for r in self.runs], per_param=per_param)

    def figure(self, name: str, *, iteration: float = 0, xaxis: str = "iteration",
               layer: str | None = None, mode: str = "row") -> go.Figure | list[go.Figure]:
        """One compare figure.

        Args:
            name: ``"loss"``, ``"help"`` (% of parameters helping), ``"layers"`` (per-layer
                totals per network) or ``"heatmap"`` (a list: one figure per run, one colour
                range).
            iteration: where the time marker / heatmap frame is: an iteration, or a fraction
                of each run's training with ``xaxis="fraction"``.
            xaxis: ``"iteration"`` or ``"fraction"``.
            layer: the heatmaps' layer (name; default: the first the runs share).
            mode: heatmap frame: ``"row"``, ``"cumulative"`` or ``"window"``.
        """
        if xaxis not in ("iteration", "fraction"):
            raise ValueError(f"xaxis={xaxis!r}: use 'iteration' or 'fraction'")
        if name == "heatmap":
            if layer is not None and not any(layer in r.layer_names for r in self.runs):
                raise KeyError(f"no run has a layer {layer!r}")
            default = compare_views.check_runs(self._state, self.names)[3]
            value = default if layer is None else compare_views.layer_value(None, layer)
            return compare_views.heatmaps(self._state, self.names, iteration, xaxis, mode,
                                          value)
        figs = dict(zip(("loss", "help", "layers"),
                        compare_views.overlays(self._state, self.names, iteration, xaxis),
                        strict=True))
        if name not in figs:
            raise ValueError(f"no compare figure {name!r}; use one of "
                             f"{', '.join(COMPARE_FIGURES)}")
        return figs[name]


def compare(runs: Sequence[Run | str | Path]) -> Comparison:
    """Compare runs (``lcaviz.compare``); see :class:`Comparison`."""
    return Comparison(runs)


def _unique(names: list[str]) -> list[str]:
    """Names made unique by a ``#k`` suffix (two runs named ``seed0`` in two folders)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}#{k + 1}")
    return out
