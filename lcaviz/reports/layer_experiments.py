"""The paper's last-layer experiments (Sec. 5, Fig. 4–5), summarised from a directory of runs.

Each bundle is classified by what its config does to the *last* layer: nothing ("regular"),
frozen, its own learning rate, or its own momentum (a delay d = m / (1 − m), so momentum 0.9
is d = 9). The report compares per-layer total LCA and final loss across them, and fits the
last layer's LCA against d (the paper finds it "fairly linear").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from lcaviz.bundle import RunBundle
from lcaviz.figures.compare import layer_totals_figure

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
    config: dict


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
            out.append(LayerRun(path.stem, treatment, delay, names, per_iter.sum(0),
                                per_iter[:EARLY].sum(0), float(loss[0]), float(loss[-1]),
                                float(loss[1:].mean()),
                                100 * abs(float(b.residual().sum())) / max(abs(d_loss), 1e-30),
                                cfg))
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
    pts = sorted({(r.delay, r.totals[-1]) for r in momentum_sweep(runs)})
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
            f"method `{c.get('method')}`, chunk {c.get('chunk_size')}, seed {c.get('seed')}, "
            f"precision {c.get('precision')}.")


def _verdicts(runs: Sequence[LayerRun]) -> list[str]:
    by = {r.treatment: r for r in runs}
    out = []
    reg = by.get("regular")
    if reg is None:
        return out
    first, last = reg.totals[0], reg.totals[-1]
    out.append(f"Regular run: the first layer's total LCA is {first:+.4g} "
               f"({'hurts' if first > 0 else 'helps'}; paper: hurts) and the last layer's is "
               f"{last:+.4g} ({'hurts' if last > 0 else 'helps'}; paper: hurts).")
    if "frozen" in by:
        fr = by["frozen"]
        others = (fr.totals[:-1].sum(), reg.totals[:-1].sum())
        out.append(f"Last layer frozen: final loss {fr.loss_final:.4f} vs {reg.loss_final:.4f} "
                   f"regular ({'lower' if fr.loss_final < reg.loss_final else 'not lower'}; "
                   f"paper: lower), mean loss over the run {fr.loss_mean:.4f} vs "
                   f"{reg.loss_mean:.4f}; all other layers together {others[0]:+.4g} vs "
                   f"{others[1]:+.4g} ({'help less' if others[0] > others[1] else 'help more'}; "
                   "paper: help less).")
    for t, r in by.items():
        if t.startswith("lr "):
            out.append(f"Last layer at {t}: its LCA {r.totals[-1]:+.4g}, final loss "
                       f"{r.loss_final:.4f}, mean {r.loss_mean:.4f} (paper: like the frozen run).")
    return out


def section(runs: Sequence[LayerRun], label: str) -> str:
    """Markdown: setup, per-run table, delay sweep with its linear fit, per-layer table."""
    if not runs:
        return f"No bundles in `{label}`.\n"
    first, last = runs[0].layer_names[0], runs[0].layer_names[-1]
    lines = [f"Bundles in `{label}`: {_setup_line(runs[0])}", ""]
    lines += ["| run | last layer | final / mean train loss | first layer (`" + first + "`) | "
              "last layer (`" + last + f"`) | last layer, first {EARLY} it | middle layers | "
              "ΣLCA | cum. residual | layers that hurt |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        hurt = [n for n, v in zip(r.layer_names, r.totals, strict=True) if v > 0]
        lines.append(f"| {r.name} | {r.treatment} | {r.loss_final:.4f} / {r.loss_mean:.4f} | "
                     f"{r.totals[0]:+.4g} | "
                     f"{r.totals[-1]:+.4g} | {r.early[-1]:+.4g} | {r.totals[1:-1].sum():+.4g} | "
                     f"{r.totals.sum():+.4g} "
                     f"| {r.residual_pct:.2f} % | {', '.join(hurt) or 'none'} |")
    lines += [""] + [f"- {v}" for v in _verdicts(runs)]
    sweep = momentum_sweep(runs)
    if sweep:
        lines += ["", "Momentum-delay sweep of the last layer (momentum = d / (d + 1); the rest "
                  "keep the regular momentum):", "",
                  "| delay d | last-layer momentum | last-layer LCA | all other layers | "
                  "final / mean loss |", "|---|---|---|---|---|"]
        lines += [f"| {r.delay:.3g} | {r.delay / (r.delay + 1):.3g} | {r.totals[-1]:+.4g} | "
                  f"{r.totals[:-1].sum():+.4g} | {r.loss_final:.4f} / {r.loss_mean:.4f} |"
                  for r in sweep]
        fit = delay_fit(runs)
        if fit:
            lines += ["", f"Linear fit: last-layer LCA = {fit[0]:+.4g} {fit[1]:+.4g}·d, "
                      f"R² = {fit[2]:.3f} (paper: fairly linear; hurting at d = 9, helping a "
                      "lot at d = 0)."]
    names = runs[0].layer_names
    lines += ["", "Total LCA per layer:", "",
              "| layer | " + " | ".join(r.name for r in runs) + " |",
              "|---" * (len(runs) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(f"{r.totals[i]:+.3g}" for r in runs) + " |"
              for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def figure(runs: Sequence[LayerRun]) -> go.Figure:
    """The paper's Fig. 4 layout: total LCA per layer, one bar series per run."""
    fig = layer_totals_figure([(f"{r.name} ({r.treatment})", r.layer_names, r.totals)
                               for r in runs],
                              title="Total LCA per layer (negative = helped)")
    fig.update_layout(width=1100, height=440, legend={"orientation": "h", "y": -0.45})
    fig.update_xaxes(tickangle=-45)
    return fig
