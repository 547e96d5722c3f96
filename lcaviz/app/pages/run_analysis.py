"""Run-page views that need a pass over the whole (R, P) matrix: value histograms (Fig. 3b)
and Weibull fits. They run as background jobs (:class:`lcaviz.app.jobs.JobRunner`) so that the
slider stays responsive; the page polls with a ``dcc.Interval``.
"""

from __future__ import annotations

import os

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


def value_scan_job(bundle, progress=None) -> dict:
    """One streaming pass, then every histogram and fit the page shows (runs in a thread;
    ``progress`` hears the fraction streamed and may stop it)."""
    scan = scan_values(bundle, progress=progress)
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
    jkey = bundle_job_key(state, "scan", key)
    return state.jobs.peek(tuple(jkey)), jkey


def job_key_of(*parts) -> list[str]:
    """A job key that survives its trip through the browser: every part as text (a file's
    mtime_ns is past 2**53, and JSON in the page would round it into another job's key)."""
    return [str(p) for p in parts]


def bundle_job_key(state: AppState, kind: str, key: tuple, *extra) -> list[str]:
    """The job key of a bundle version ``key = (path, mtime_ns, size)`` of :meth:`AppState.open`.

    The path goes in relative to the runs directory: the server strips that directory from
    every answer (no server paths in pages), so an absolute path would come back from the
    browser as another key, and polling would start the same job a second time.
    """
    path, *stamp = key
    rel = os.path.relpath(path, state.runs_dir)
    return job_key_of(kind, rel, *stamp, *extra)


def scan_status(state: AppState, run_id: str, job_key: list | None = None,
                owner: str | None = None) -> tuple[JobStatus, list]:
    """Start (or poll) the value-scan job of a run.

    Args:
        state: app state.
        run_id: untrusted run id.
        job_key: the key returned by an earlier call (poll that job); None starts a job for
            the bundle as it is now.
        owner: the page visit asking (its jobs are cancelled when it is left).

    Returns:
        ``(status, key)``; keep the key to poll the same job while a live run grows.
    """
    b, key = state.open(run_id)
    jkey = job_key_of(*job_key) if job_key else bundle_job_key(state, "scan", key)
    return state.jobs.status(tuple(jkey), value_scan_job, b, progress_kw="progress",
                             owner=owner, label=f"value scan of {run_id}"), jkey


def histogram_figure(result: dict) -> go.Figure:
    """Fig. 3b from a finished scan."""
    h = result["hist"]
    total = h["n_help"] + h["n_hurt"]
    fig = fhelp.help_hurt_hist_figure((h["help"]["counts"], h["help"]["edges"]),
                                      (h["hurt"]["counts"], h["hurt"]["edges"]), total=total)
    out = 100 * (h["clipped_help"] + h["clipped_hurt"]) / total if total else 0.0
    # two short lines: one long line ran under the modebar and off the card
    fig.update_layout(title_text=f"LCA values<br><sup>{result.get('rows_note', '')}; "
                                 f"{out:.2g} % in the far tails not shown</sup>",
                      margin={"t": 72})
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
    """One line for the progress indicator: where a job waits and behind what, how long it
    ran (and waited), or why it stopped."""
    if st.state == "queued":
        behind = f"; running now: {', '.join(st.running)}" if st.running else ""
        return (f"{what}: waiting for a free worker, number {st.position} in the queue"
                f"{behind} ({st.elapsed:.0f} s so far)")
    if st.state == "running":
        pct = f" {100 * st.progress:.0f} %" if st.progress is not None else ""
        waited = f", after {st.waited:.0f} s in the queue" if st.waited >= 1 else ""
        return f"Computing {what}…{pct} ({st.elapsed:.0f} s{waited})"
    if st.state == "cancelled":
        return f"{what}: cancelled (the page that asked for it was left)"
    if st.state == "error":
        return f"{what} failed: {st.error}"
    waited = f" (after {st.waited:.1f} s waiting in the queue)" if st.waited >= 0.5 else ""
    return f"{what}: done in {st.elapsed:.1f} s{waited}"
