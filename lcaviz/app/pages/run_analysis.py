"""Run-page views that need a pass over the whole (R, P) matrix: value histograms (Fig. 3b)
and Weibull fits. They run as background jobs (:class:`lcaviz.app.jobs.JobRunner`) so that the
slider stays responsive; the page polls with a ``dcc.Interval``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from lcaviz.analysis.distributions import lca_histograms
from lcaviz.analysis.scan import scan_values
from lcaviz.analysis.weibull import weibull_fits
from lcaviz.app.jobs import JobStatus
from lcaviz.app.state import AppState
from lcaviz.figures import helping as fhelp
from lcaviz.figures.theme import HELP_COLOR, HURT_COLOR, empty_figure, layer_color
from lcaviz.figures.weibull import weibull_figure

AUTO_SCAN_CELLS = 50_000_000  # R·P up to which the value scan starts on page load (~1 s)
GROUPS = (("sign", "helping vs hurting"), ("layer_help", "per layer, helping"),
          ("layer_hurt", "per layer, hurting"))


def _abs_hist(h: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of |LCA| from one sign of :func:`lca_histograms`."""
    edges, counts = np.asarray(h["edges"], float), np.asarray(h["counts"], float)
    if edges[-1] <= 0:  # helping: negative edges increasing to 0 -> magnitudes
        return counts[::-1], -edges[::-1]
    return counts, edges


def value_scan_job(bundle) -> dict:
    """One streaming pass, then every histogram and fit the page shows (runs in a thread)."""
    scan = scan_values(bundle)
    out = {"hist": lca_histograms(scan, bins=80, clip_percentile=99.5, shared_range=True),
           "abs": lca_histograms(scan, bins=60, clip_percentile=99.9, log_bins=True),
           "layers_abs": [lca_histograms(scan, bins=40, clip_percentile=99.9, log_bins=True,
                                         layer=li) for li in range(bundle.n_layers)],
           "fits": weibull_fits(scan), "layer_names": list(bundle.layer_names),
           "n_rows": scan.n_rows, "rows_note": scan.rows_note}
    return out


def scan_peek(state: AppState, run_id: str) -> tuple[JobStatus | None, list]:
    """The value-scan job of the bundle as it is now, if one was started (starts nothing)."""
    _, key = state.open(run_id)
    jkey = ["scan", *key]
    return state.jobs.peek(tuple(jkey)), jkey


def scan_status(state: AppState, run_id: str, job_key: list | None = None
                ) -> tuple[JobStatus, list]:
    """Start (or poll) the value-scan job of a run.

    Args:
        state: app state.
        run_id: untrusted run id.
        job_key: the key returned by an earlier call (poll that job); None starts a job for
            the bundle as it is now.

    Returns:
        ``(status, key)``; keep the key to poll the same job while a live run grows.
    """
    b, key = state.open(run_id)
    jkey = list(job_key) if job_key else ["scan", *key]
    return state.jobs.status(tuple(jkey), value_scan_job, b), jkey


def histogram_figure(result: dict) -> go.Figure:
    """Fig. 3b from a finished scan."""
    h = result["hist"]
    total = h["n_help"] + h["n_hurt"]
    fig = fhelp.help_hurt_hist_figure((h["help"]["counts"], h["help"]["edges"]),
                                      (h["hurt"]["counts"], h["hurt"]["edges"]), total=total)
    out = 100 * (h["clipped_help"] + h["clipped_hurt"]) / total if total else 0.0
    fig.update_layout(title_text=f"LCA values: {result.get('rows_note', '')} ({out:.2g} % "
                                 "in far tails not shown)")
    return fig


def weibull_view(result: dict, group: str = "sign") -> go.Figure:
    """|LCA| histograms with Weibull fits (k, λ, KS in the legend)."""
    fits = result["fits"]
    panels = []
    if group == "sign":
        for sign, color, name in (("help", HELP_COLOR, "helping"),
                                  ("hurt", HURT_COLOR, "hurting")):
            counts, edges = _abs_hist(result["abs"][sign])
            f = fits[sign]
            panels.append({"name": name, "counts": counts, "edges": edges, "k": f.k,
                           "lam": f.scale, "ks": f.ks, "color": color})
    else:
        sign = "help" if group == "layer_help" else "hurt"
        for li, (h, lf) in enumerate(zip(result["layers_abs"], fits["layers"], strict=True)):
            counts, edges = _abs_hist(h[sign])
            f = lf[sign]
            panels.append({"name": str(lf["layer"]), "counts": counts, "edges": edges,
                           "k": f.k, "lam": f.scale, "ks": f.ks, "color": layer_color(li)})
    panels = [p for p in panels if np.sum(p["counts"]) > 0]
    if not panels:
        return empty_figure("No nonzero LCA values to fit.")
    what = dict(GROUPS).get(group, group)
    return weibull_figure(panels, title=f"|LCA| with Weibull fits — {what}<br><sup>"
                                        f"{result.get('rows_note', '')}</sup>")


def status_text(st: JobStatus, what: str) -> str:
    """One line for the progress indicator."""
    if st.state == "running":
        pct = f" {100 * st.progress:.0f} %" if st.progress is not None else ""
        return f"Computing {what}…{pct} ({st.elapsed:.0f} s)"
    if st.state == "error":
        return f"{what} failed: {st.error}"
    return f"{what}: done in {st.elapsed:.1f} s"
