"""Run-page views of synchronised learning (paper Fig. 6): per-class peaks by layer (cheap,
computed on demand) and the random-shift test (a background job)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from lcaviz.analysis.synchrony import synchrony, top_peaks
from lcaviz.app.jobs import JobStatus
from lcaviz.app.pages.run_analysis import bundle_job_key, job_key_of
from lcaviz.app.state import AppState
from lcaviz.figures.synchrony import class_peaks_figure, shift_test_panel
from lcaviz.figures.theme import empty_figure


def class_curves(state: AppState, run_id: str) -> tuple[np.ndarray | None, list[str], list[str]]:
    """(T, C, L) per-class per-layer LCA (or lca_layer as one pseudo-class), cached."""
    b, key = state.open(run_id)
    if b.has_class_layer:
        # NaN where a --lca-every run allocated nothing: peaks skip those iterations
        x = state.cached(("class_layer", key), lambda: b.lca_class_layer(gaps=np.nan))
        return x, list(b.class_names), list(b.layer_names)
    x = state.cached(("layer_as_class", key), lambda: b.lca_layer(gaps=np.nan)[:, None, :])
    return x, ["all classes"], list(b.layer_names)


def peaks_view(state: AppState, run_id: str, cls: int, k: int) -> go.Figure:
    """Per-layer curves of class ``cls`` with its top-k peaks and the aligned moments."""
    x, classes, layer_names = class_curves(state, run_id)
    if x is None or x.shape[0] < 3:
        return empty_figure("Not enough iterations for peaks yet.")
    c = min(max(int(cls), 0), x.shape[1] - 1)
    curves = x[:, c, :]
    peaks = [top_peaks(curves[:, li], k) for li in range(curves.shape[1])]
    sets = [set(p.tolist()) for p in peaks]
    aligned = np.array(sorted(set.intersection(*sets)) if sets else [], np.int64)
    fig = class_peaks_figure(curves, layer_names, peaks, aligned, class_name=classes[c], k=k)
    if len(classes) == 1 and classes[0] == "all classes":
        fig.update_layout(title_text=fig.layout.title.text + " (no per-class split saved)")
    return fig


def sync_job(x: np.ndarray, k: int, shift: int, resamples: int) -> dict:
    """The shift test over all classes (runs in a thread)."""
    return synchrony(x, k=k, max_shift=shift, n_resamples=resamples)


def sync_status(state: AppState, run_id: str, k: int, shift: int, resamples: int,
                job_key: list | None = None, owner: str | None = None
                ) -> tuple[JobStatus, list]:
    """Start or poll the shift-test job; returns ``(status, key)``."""
    b, key = state.open(run_id)
    jkey = job_key_of(*job_key) if job_key else bundle_job_key(state, "sync", key, int(k),
                                                               int(shift), int(resamples))
    x, _, _ = class_curves(state, run_id)
    return state.jobs.status(tuple(jkey), sync_job, x, int(k), int(shift), int(resamples),
                             owner=owner, label=f"shift test of {run_id}"), jkey


def test_view(result: dict | None, cls: int) -> go.Figure:
    """The pooled shift test (title) with its baseline, and class ``cls``'s beside it."""
    if not result:
        return empty_figure("Press “Run shift test”.")
    return shift_test_panel(result, cls)
