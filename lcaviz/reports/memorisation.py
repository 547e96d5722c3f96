"""docs/findings.md, label-noise section: which layers memorise mislabeled examples (generated).

    python -m lcaviz.reports.memorisation --run runs/label_noise.h5 \
        [--out docs/findings.md] [--figure docs/img/label_noise.png]

Everything between the BEGIN/END markers is generated from the bundle
(:mod:`lcaviz.analysis.label_noise`); the prose outside them is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import plotly.graph_objects as go

from lcaviz.analysis import label_noise as ln
from lcaviz.bundle import RunBundle
from lcaviz.figures.theme import layer_color, style
from lcaviz.reports.findings import write_generated

BEGIN, END = "<!-- BEGIN label-noise -->", "<!-- END label-noise -->"


def _checkpoints(n_rows: int) -> list[int]:
    """Row indices at about 5 %, 10 %, 25 %, 50 % and 100 % of the run (distinct, sorted)."""
    return sorted({max(0, min(n_rows - 1, round(q * n_rows) - 1))
                   for q in (0.05, 0.1, 0.25, 0.5, 1.0)})


def timeline_table(d: ln.NoiseData) -> list[str]:
    t = ln.timeline(d, _checkpoints(len(d.windows)))
    head = "| up to iteration | " + " | ".join(
        f"{n}: mislabeled | {n}: clean" for n in d.layer_names) + " |"
    rows = [head, "|---" * (1 + 2 * len(d.layer_names)) + "|"]
    for k, it in enumerate(t["iteration"]):
        cells = [f"{t['flipped'][k, i]:+.3f} | {t['clean'][k, i]:+.3f}"
                 for i in range(len(d.layer_names))]
        rows.append(f"| {int(it)} | " + " | ".join(cells) + " |")
    return rows


def ranking_table(d: ln.NoiseData, early_rows: int) -> list[str]:
    rows = ["| score (higher = flagged as mislabeled) | AUROC |", "|---|---|"]
    rows += [f"| {k} | {v:.3f} |" for k, v in ln.rankings(d, early_rows).items()]
    return rows


def section(b: RunBundle) -> str:
    d = ln.from_bundle(b)
    noise = b.label_noise()
    c = b.config
    early = max(1, len(d.windows) // 10)
    lines = [
        f"Bundle `{b.path.name}`: `{c.get('net')}` on `{c.get('dataset')}`, "
        f"{c.get('optimizer')} lr {c.get('lr')}, batch {c.get('batch_size')}, {b.n_iters} "
        f"iterations, method `{b.method}`, seed {c.get('seed')}; label noise "
        f"{100 * float(noise['fraction']):g} % (seed {noise['seed']}): "
        f"{len(noise['flipped']):,} flipped labels; {len(d.flipped):,} tracked examples, "
        f"{int(d.flipped.sum()):,} of them mislabeled. Final training accuracy "
        f"{100 * float(b.accuracy_train()[-1]):.1f} % (on the noisy labels).",
        "",
        "Mean cumulative change of an example's own loss, split by layer (N · Σ E; negative = "
        "the layer lowered it):", ""]
    lines += timeline_table(d)
    lines += ["", f"Ranking the tracked examples as mislabeled ({len(d.flipped):,} examples; "
              f"'early' = the first {early} of {len(d.windows)} row windows, up to iteration "
              f"{int(d.windows[early - 1, 1])}):", ""]
    lines += ranking_table(d, early)
    return "\n".join(lines) + "\n"


def figure(b: RunBundle) -> go.Figure:
    """Mean cumulative per-layer loss change of mislabeled (solid) and clean (dash) examples."""
    d = ln.from_bundle(b)
    t = ln.timeline(d, list(range(len(d.windows))))
    fig = go.Figure()
    for i, name in enumerate(d.layer_names):
        for group, dash in (("flipped", "solid"), ("clean", "dash")):
            label = "mislabeled" if group == "flipped" else "clean"
            fig.add_trace(go.Scatter(x=t["iteration"], y=t[group][:, i], name=f"{name}, {label}",
                                     line={"color": layer_color(i), "dash": dash}))
    style(fig, "Label noise: mean cumulative per-layer change of an example's loss",
          height=480, ylabel="N · cumulative LCA")
    fig.update_xaxes(title_text="iteration")
    fig.update_layout(width=1000)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the label-noise section of docs/findings.md")
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/findings.md"))
    ap.add_argument("--figure", type=Path, default=None, help="also write the figure as PNG")
    a = ap.parse_args(argv)
    write_generated(a.run, a.out, a.figure, section, figure,
                    "Per-layer loss change of mislabeled and clean examples", BEGIN, END,
                    heading="Label noise: which layers memorise mislabeled examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
