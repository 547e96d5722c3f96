"""The paper's last-layer experiments (Sec. 5, Fig. 4–5), summarised from a directory of runs.

Each bundle is classified by what its config does to the *last* layer: nothing ("regular"),
frozen, its own learning rate, or its own momentum (a delay d = m / (1 − m), so momentum 0.9
is d = 9). The report compares per-layer total LCA and final loss across them, and fits the
last layer's LCA against d (the paper finds it "fairly linear"). Runs of several seeds are
grouped by treatment (means ± std) and every claim is tested over seeds
(:mod:`lcaviz.reports.layer_claims`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from lcaviz.bundle import RunBundle
from lcaviz.figures.compare import layer_totals_figure
from lcaviz.reports.layer_claims import claims, claims_table

EARLY = 10  # "start of training": the paper notes the last layer's LCA is high in the first few


@dataclass
class LayerRun:
    """One run's layer totals and how it treats the last layer."""

    name: str
    treatment: str  # "regular", "frozen", "lr 0.01", "delay 3", ...
    delay: float | None  # momentum delay of the last layer (None for Adam)
    layer_names: list[str]
    totals: np.ndarray  # (L,) LCA summed over all iterations
    early: np.ndarray  # (L,) LCA summed over the first EARLY iterations
    loss0: float
    loss_final: float
    loss_mean: float  # mean full-dataset loss over the run (area under the curve / T)
    residual_pct: float  # |Σ residual| / |ΔL| in %
    residual_abs: float  # |Σ residual|, loss units: the error of any sum of this run's LCA
    config: dict

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


def _delay(m: float) -> float:
    return m / (1.0 - m)


def classify(config: dict, last: str) -> tuple[str, float | None]:
    """(treatment, last-layer momentum delay) from a run config."""
    sgd = config.get("optimizer") == "sgd"
    delay = _delay(config.get("momentum", 0.0)) if sgd else None
    if last in config.get("freeze", []):
        return "frozen", None
    if last in config.get("layer_lr", {}):
        return f"lr {config['layer_lr'][last]:g}", delay
    if last in config.get("layer_momentum", {}):
        d = _delay(config["layer_momentum"][last])
        return f"delay {d:.3g}", d
    return "regular", delay


def load_runs(runs_dir: Path) -> list[LayerRun]:
    """Every bundle in ``runs_dir``, sorted by name."""
    out = []
    for path in sorted(Path(runs_dir).glob("*.h5")):
        with RunBundle.open(path) as b:
            names = list(b.layer_names)
            cfg = b.config
            loss = b.loss_train()
            treatment, delay = classify(cfg, names[-1])
            d_loss = float(loss[-1] - loss[0])
            per_iter = b.lca_layer()  # (T, L)
            res = abs(float(b.residual().sum()))
            out.append(LayerRun(path.stem, treatment, delay, names, per_iter.sum(0),
                                per_iter[:EARLY].sum(0), float(loss[0]), float(loss[-1]),
                                float(loss[1:].mean()), 100 * res / max(abs(d_loss), 1e-30),
                                res, cfg))
    return out


def momentum_sweep(runs: Sequence[LayerRun]) -> list[LayerRun]:
    """Runs whose last layer differs at most in momentum (regular and delay runs), by delay."""
    return sorted((r for r in runs if r.delay is not None
                   and (r.treatment == "regular" or r.treatment.startswith("delay"))),
                  key=lambda r: r.delay)


def delay_fit(runs: Sequence[LayerRun]) -> tuple[float, float, float] | None:
    """Least-squares last-layer LCA = a + b·d over runs whose last layer only changes momentum.

    Returns:
        (a, b, R²), or None with fewer than three distinct delays.
    """
    pts = sorted((r.delay, r.totals[-1]) for r in momentum_sweep(runs))  # every seed's point
    if len({d for d, _ in pts}) < 3:
        return None
    d, y = np.array(pts).T
    b, a = np.polyfit(d, y, 1)
    ss_res = float(((y - (a + b * d)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return float(a), float(b), 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def _setup_line(r: LayerRun) -> str:
    c = r.config
    data = c.get("dataset", "?") + (" padded to 3×32×32" if c.get("rgb32") else "")
    n = f", first {c['train_size']:,} training images" if c.get("train_size") else ""
    return (f"`{c.get('net')}` on {data}{n}; {c.get('optimizer')} lr {c.get('lr')}, momentum "
            f"{c.get('momentum')}, batch {c.get('batch_size')}, {c.get('iters')} iterations, "
            f"method `{c.get('method')}`{_tolerance(c)}, chunk {c.get('chunk_size')}, "
            f"precision {c.get('precision')}.")


def _tolerance(c: dict) -> str:
    if c.get("method") != "adaptive":
        return ""
    return f" (tol {c.get('tol'):g}, rtol {c.get('rtol', 0):g})"


def _mean_sd(x: Sequence[float], fmt: str) -> str:
    x = np.asarray(x, dtype=float)
    sd = f" ± {x.std(ddof=1):{fmt.lstrip('+')}}" if x.size > 1 else ""  # a spread has no sign
    return f"{x.mean():{fmt}}{sd}"


def treatments(runs: Sequence[LayerRun]) -> dict[str, list[LayerRun]]:
    """Runs grouped by treatment, in the order the treatments first appear."""
    out: dict[str, list[LayerRun]] = {}
    for r in runs:
        out.setdefault(r.treatment, []).append(r)
    return out


def section(runs: Sequence[LayerRun], label: str) -> str:
    """Markdown: setup, per-run table, per-treatment means over seeds, the claims with their
    verdicts, the delay sweep with its linear fit, and the per-layer totals."""
    if not runs:
        return f"No bundles in `{label}`.\n"
    first, last = runs[0].layer_names[0], runs[0].layer_names[-1]
    seeds = sorted({r.seed for r in runs})
    lines = [f"Bundles in `{label}`: {_setup_line(runs[0])} Seeds {', '.join(map(str, seeds))}.",
             "", "| run | last layer | seed | final / mean train loss | first layer (`" + first +
             "`) | last layer (`" + last + f"`) | last layer, first {EARLY} it | middle layers "
             "| ΣLCA | cum. residual | layers that hurt |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        hurt = [n for n, v in zip(r.layer_names, r.totals, strict=True) if v > 0]
        lines.append(f"| {r.name} | {r.treatment} | {r.seed} | {r.loss_final:.4f} / "
                     f"{r.loss_mean:.4f} | {r.totals[0]:+.4g} | {r.totals[-1]:+.4g} | "
                     f"{r.early[-1]:+.4g} | {r.totals[1:-1].sum():+.4g} | {r.totals.sum():+.4g} "
                     f"| {r.residual_pct:.2f} % | {', '.join(hurt) or 'none'} |")
    groups = treatments(runs)
    lines += ["", "Per treatment, mean ± std over seeds:", "",
              "| last layer | seeds | final train loss | mean train loss | first layer | "
              "last layer | all other layers | largest cum. residual |",
              "|---|---|---|---|---|---|---|---|"]
    for t, rs in groups.items():
        lines.append(f"| {t} | {len(rs)} | {_mean_sd([r.loss_final for r in rs], '.4f')} | "
                     f"{_mean_sd([r.loss_mean for r in rs], '.4f')} | "
                     f"{_mean_sd([r.totals[0] for r in rs], '+.4g')} | "
                     f"{_mean_sd([r.totals[-1] for r in rs], '+.4g')} | "
                     f"{_mean_sd([r.totals[:-1].sum() for r in rs], '+.4g')} | "
                     f"{max(r.residual_pct for r in rs):.2f} % |")
    cs = claims(runs)
    if cs:
        lines += ["", "The paper's claims, each reduced to one value per seed that is positive "
                  "when the claim holds (paired by seed where two treatments are compared):", ""]
        lines += claims_table(cs)
    sweep = momentum_sweep(runs)
    fit = delay_fit(runs)
    if sweep and fit:
        lines += ["", f"Linear fit over every seed's sweep point (momentum = d / (d + 1), the "
                  f"rest keep the regular momentum): last-layer LCA = {fit[0]:+.4g} "
                  f"{fit[1]:+.4g}·d, R² = {fit[2]:.3f} (paper: fairly linear; hurting at d = 9, "
                  "helping a lot at d = 0)."]
    names = runs[0].layer_names
    lines += ["", "Total LCA per layer, mean over seeds:", "",
              "| layer | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(f"{np.mean([r.totals[i] for r in rs]):+.3g}"
                                      for rs in groups.values()) + " |"
              for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def figure(runs: Sequence[LayerRun]) -> go.Figure:
    """The paper's Fig. 4 layout: total LCA per layer, one bar series per treatment (the mean
    over its seeds, with the standard deviation as error bars when there are several)."""
    groups = treatments(runs)
    series = [(f"{t} ({len(rs)} seed{'s' if len(rs) > 1 else ''})", rs[0].layer_names,
               np.mean([r.totals for r in rs], axis=0)) for t, rs in groups.items()]
    fig = layer_totals_figure(series, title="Total LCA per layer (negative = helped)")
    for trace, rs in zip(fig.data, groups.values(), strict=True):
        if len(rs) > 1:
            trace.error_y = {"type": "data", "array": np.std([r.totals for r in rs], axis=0,
                                                              ddof=1), "visible": True}
    fig.update_layout(width=1100, height=440, legend={"orientation": "h", "y": -0.45})
    fig.update_xaxes(tickangle=-45)
    return fig
