"""docs/findings.md, grokking per-example section: which components lowered the loss of which
training pairs in each phase (generated).

    python -m lcaviz.reports.grokking_examples --run runs/grokking_examples.h5 \
        [--out docs/findings.md] [--figure docs/img/grokking_examples.png]

Everything between the BEGIN/END markers is generated from the bundle
(:mod:`lcaviz.analysis.grokking_examples`); the prose outside them is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.analysis import grokking_examples as ge
from lcaviz.bundle import RunBundle
from lcaviz.figures.theme import style
from lcaviz.reports.findings import _milestones, _setup, write_generated

BEGIN, END = "<!-- BEGIN grokking-examples -->", "<!-- END grokking-examples -->"
UNRESOLVED = 0.1  # a phase whose median per-example |residual| is ≥ this × median |Δℓ_n|


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %" if np.isfinite(v) else "–"


def _unresolved(res: np.ndarray | None, change: np.ndarray | None) -> bool:
    if res is None or change is None:
        return False
    r = float(np.median(np.abs(res)))
    return r > 0 and r >= UNRESOLVED * float(np.median(np.abs(change)))


def phase_table(ph, ends) -> tuple[list[str], list[bool]]:
    """The phases' rows, per-example loss changes and residuals; and which are unresolved."""
    rows = ["| phase | iterations (whole rows) | mean Δℓ_n | pairs whose loss fell | "
            "per-example residual: median abs | max abs |", "|---|---|---|---|---|---|"]
    flags = []
    for p, end in zip(ph, ends, strict=True):
        res = ge.example_residual(p, end)
        change = None if res is None else end - p.loss_start
        flags.append(_unresolved(res, change))
        tag = "†" if flags[-1] else ""
        if res is None:
            cells = [f"{p.x.sum(1).mean():+.3g} (LCA)", _pct(float((p.x.sum(1) < 0).mean())),
                     "–", "–"]
        else:
            cells = [f"{change.mean():+.3g}", _pct(float((change < 0).mean())),
                     f"{np.median(np.abs(res)):.2g}", f"{np.abs(res).max():.2g}"]
        rows.append(f"| {p.name}{tag} | {p.start}–{p.end} | " + " | ".join(cells) + " |")
    return rows, flags


def share_table(ph, names: list[str], flags: list[bool]) -> list[str]:
    stats = [ge.component_stats(p.x) for p in ph]
    head = " | ".join(p.name + ("†" if f else "") for p, f in zip(ph, flags, strict=True))
    rows = [f"| component | {head} |", "|---" * (len(ph) + 1) + "|"]
    for i, n in enumerate(names):
        cells = [f"{_pct(s['lowered'][i])} ({_pct(s['cancelled'][i])}; top 10 %: "
                 f"{_pct(s['top10'][i])})" for s in stats]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return rows


def _split_lines(b: RunBundle, split: str) -> list[str]:
    """The phase and share tables of one split's tracked pairs, and the cross-phase lines."""
    ph = ge.example_phases(b, split)
    ends = ge.phase_end_losses(b, ph, split)
    names = list(b.layer_names)
    lines, (table, flags) = [], phase_table(ph, ends)
    lines += table
    if any(flags):
        lines += ["", "† The per-example residual is at least "
                  f"{UNRESOLVED:g} × the typical per-example loss change: those columns are "
                  "dominated by quadrature error, not by what the components did."]
    lines += ["", "Per component and phase: the share of pairs whose loss it lowered (in "
              "brackets: how much of its per-pair changes cancel between pairs, 1 − |Σ x_n| / "
              "Σ |x_n|, and the share of Σ |x_n| carried by the 10 % of pairs it changed most; "
              "10 % if it changed every pair alike):", ""]
    lines += share_table(ph, names, flags)
    by = {p.name: (p, f) for p, f in zip(ph, flags, strict=True)}
    if "memorisation" in by and "generalisation" in by:
        m, g = by["memorisation"][0].x, by["generalisation"][0].x
        rho = [ge.rank_correlation(m[:, i], g[:, i]) for i in range(len(names))]
        lines += ["", "The same pairs in memorisation and in generalisation (Spearman's ρ "
                  "across pairs of a component's x_n in the two phases): " + ", ".join(
                      f"`{nm}` {r:+.2f}" for nm, r in zip(names, rho, strict=True)) + "."]
    for name in ("memorisation", "generalisation"):
        if name in by and not by[name][1]:
            pairs = ge.anti_correlated(by[name][0].x, names)
            lines += ["", f"Most anti-correlated components across pairs in {name} (where "
                      "one lowered a pair's loss the other raised it; Spearman's ρ): " + ", ".join(
                          f"`{a}` / `{c}` {r:+.2f}" for a, c, r in pairs) + "."]
    if b.has_example_set(split, "group"):
        lines += ["", "Per attention head (the split groups; shares as above):", ""]
        gph = ge.example_phases(b, split, by="group")
        lines += share_table(gph, list(b.example_group_names), flags[:len(gph)])
    return lines


def section(b: RunBundle) -> str:
    rows = np.asarray(b.row_windows)
    n = int(b.config.get("per_example_of") or b.n_examples)
    lines = [f"Bundle `{b.path.name}`: {_setup(b)}", "", _milestones(b), "",
             f"Per-example LCA in rows of {int(rows[0, 1] - rows[0, 0])} iterations "
             "(`lca_example`). A phase here is the whole rows nearest to its accuracy marks; "
             "x_n = N · Σ E is the change a component made to pair n's own loss.", "",
             f"**Training pairs** ({b.n_examples:,} of {n:,}):", ""]
    lines += _split_lines(b, "train")
    if getattr(b, "has_val_examples", False):
        nv = int(b.config.get("per_example_val_of") or b.n_val_examples)
        lines += ["", f"**Validation pairs** ({b.n_val_examples:,} of {nv:,}; their loss is "
                  "allocated along the same steps, `lca_val_example`):", ""]
        lines += _split_lines(b, "val")
    return "\n".join(lines) + "\n"


def figure(b: RunBundle) -> go.Figure:
    """Per component (rows) and phase (columns): the share of training pairs it lowered, and
    beside it the same for the validation pairs (or, without them, the share of its per-pair
    change carried by its top 10 % of training pairs)."""
    panels = [("train", "lowered", "training pairs whose loss the component lowered")]
    if getattr(b, "has_val_examples", False):
        panels.append(("val", "lowered", "validation pairs whose loss it lowered"))
    else:
        panels.append(("train", "top10", "share of Σ|x_n| in its top 10 % of training pairs"))
    names = list(b.layer_names)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=[t for _, _, t in panels])
    for c, (split, key, _) in enumerate(panels, start=1):
        ph = ge.example_phases(b, split)
        _, flags = phase_table(ph, ge.phase_end_losses(b, ph, split))
        cols = [f"{p.name}{'†' if f else ''}<br>{p.start}–{p.end}"
                for p, f in zip(ph, flags, strict=True)]
        z = np.array([ge.component_stats(p.x)[key] for p in ph]).T * 100  # (L, phases)
        fig.add_trace(go.Heatmap(z=z, x=cols, y=names, zmin=0, zmax=100, colorscale="Viridis",
                                 text=[[f"{v:.0f} %" for v in r] for r in z],
                                 texttemplate="%{text}", showscale=c == 2,
                                 colorbar={"title": "%"}), row=1, col=c)
        fig.update_yaxes(autorange="reversed", row=1, col=c)
    style(fig, "Grokking, per pair (x_n: a component's change of pair n's loss; "
          "† = dominated by quadrature error)", height=500)
    fig.update_layout(width=1150, margin={"t": 110})
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the grokking per-example section of "
                                 "docs/findings.md")
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/findings.md"))
    ap.add_argument("--figure", type=Path, default=None, help="also write the figure as PNG")
    a = ap.parse_args(argv)
    write_generated(a.run, a.out, a.figure, section, figure,
                    "Per training pair: share lowered and concentration per component and phase",
                    BEGIN, END, heading="Grokking, per training pair")
    return 0


if __name__ == "__main__":
    sys.exit(main())
