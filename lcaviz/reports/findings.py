"""docs/findings.md: what LCA shows in the grokking transformer run (generated).

    python -m lcaviz.reports.findings --run sample_runs/transformer_grokking.h5 \
        [--out docs/findings.md] [--figure docs/img/grokking.png]

Everything between the BEGIN/END markers is generated from the bundle
(:mod:`lcaviz.analysis.grokking`); the prose outside them is written by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.analysis import grokking as gk
from lcaviz.bundle import RunBundle
from lcaviz.figures.theme import layer_color, style

BEGIN, END = "<!-- BEGIN grokking -->", "<!-- END grokking -->"


def _setup(b: RunBundle) -> str:
    c = b.config
    secs = b.seconds()
    return (f"`{c.get('net')}` on `{c.get('dataset')}` (p = {c.get('modulus')}, training "
            f"fraction {c.get('train_fraction')}), {c.get('optimizer')} lr {c.get('lr')}, "
            f"betas {tuple(c.get('betas') or ())}, weight decay {c.get('weight_decay')}, batch "
            f"{c.get('batch_size')}, {b.n_iters} iterations, method `{b.method}`, seed "
            f"{c.get('seed')}; {b.n_params:,} parameters. Time: {float(np.mean(secs)):.3f} s "
            f"per iteration on average (median {float(np.median(secs)):.3f} s), "
            f"{float(np.sum(secs)) / 60:.1f} min in all, on {b.device_name or 'an unnamed device'}"
            ".")


def _milestones(b: RunBundle) -> str:
    at = {f"train {100 * q:g} %": gk.first_at_least(b.accuracy_train(), q) for q in (1.0,)}
    at.update({f"validation {100 * q:g} %": gk.first_at_least(b.accuracy_val(), q)
               for q in (0.5, 0.95, 0.99)})
    return "First iteration at: " + "; ".join(
        f"{k}: {'never' if v is None else v}" for k, v in at.items()) + "."


def _lead(values: np.ndarray, names: list[str], sign: int, n: int = 3) -> str:
    order = np.argsort(sign * values, kind="stable")[:n]
    picked = [(names[i], values[i]) for i in order if sign * values[i] < 0]
    return ", ".join(f"`{nm}` {v:+.3g}" for nm, v in picked) or "none"


def unresolved(ph: list[gk.Phase]) -> list[gk.Phase]:
    """Phases whose training-loss LCA is dominated by quadrature error: the residual is at
    least a tenth of the loss change (after memorisation the training loss is ~1e-7 and its
    rare spikes are single steps that one Simpson interval does not resolve)."""
    return [p for p in ph if abs(p.residual_train) >= 0.1 * max(abs(p.d_train), 1e-300)]


def phase_table(ph: list[gk.Phase], names: list[str]) -> list[str]:
    rows = ["| phase | iterations | ΔL train | residual (train) | ΔL validation | residual (val) "
            "| lowered the validation loss most | raised it most |",
            "|---|---|---|---|---|---|---|---|"]
    for p in ph:
        rows.append(f"| {p.name} | {p.start}–{p.end} | {p.d_train:+.4g} | "
                    f"{p.residual_train:+.2g} | {p.d_val:+.4g} | {p.residual_val:+.2g} | "
                    f"{_lead(p.lca_val, names, +1)} | {_lead(p.lca_val, names, -1)} |")
    return rows


def unresolved_note(ph: list[gk.Phase], method: str) -> list[str]:
    """A warning naming the phases :func:`unresolved` finds (none: no lines)."""
    bad = unresolved(ph)
    if not bad:
        return []
    which = ", ".join(f"{p.name} (residual {p.residual_train:+.2g} against ΔL "
                      f"{p.d_train:+.2g})" for p in bad)
    return ["", f"**Not resolved:** the training-loss LCA of {which} is dominated by "
            f"quadrature error (method `{method}`): read those columns of the training table "
            "(marked †) as unreliable; resolving them needs a finer quadrature on the steps "
            "responsible (`--method adaptive` with a `--tol` well below the phase's |ΔL| per "
            "iteration)."]


def component_table(ph: list[gk.Phase], names: list[str], which: str,
                    marked: list[gk.Phase] = ()) -> list[str]:
    rows = ["| component | " + " | ".join(p.name + ("†" if any(p is m for m in marked) else "")
                                          for p in ph) + " |",
            "|---" * (len(ph) + 1) + "|"]
    for i, n in enumerate(names):
        rows.append(f"| {n} | " + " | ".join(f"{getattr(p, which)[i]:+.3g}" for p in ph) + " |")
    return rows


def synchrony_line(x: np.ndarray, names: list[str], label: str, n_resamples: int,
                   kind: str = "components") -> str:
    s = gk.synchrony_all(x, n_resamples=n_resamples)
    at = f" (iterations {', '.join(map(str, s['aligned']))})" if s["aligned"] else ""
    return (f"- {label}: all {len(names)} {kind} peak together at {s['actual']} of their "
            f"top-{s['k']} moments{at} vs {s['baseline']:.2f} in the shift baseline "
            f"(p = {s['p']:.3g}; the smallest p this test can give is {s['p_floor']:.2g}).")


def figure(b: RunBundle) -> go.Figure:
    """Accuracies (top) and the cumulative validation LCA of each component (bottom)."""
    names, _, va, kind = gk.components(b)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.35, 0.65])
    x = np.arange(b.n_iters + 1)
    for label, acc, dash in (("train accuracy", b.accuracy_train(), "solid"),
                             ("validation accuracy", b.accuracy_val(), "dash")):
        fig.add_trace(go.Scatter(x=x, y=acc, name=label, line={"color": "#222", "dash": dash}),
                      row=1, col=1)
    cum = np.vstack([np.zeros((1, va.shape[1])), np.cumsum(va, axis=0)])  # (T + 1, G)
    # groups: one colour per layer, the heads of a layer told apart by their dash
    layer = b.group_layer if kind == "groups" else np.arange(len(names))
    dashes = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
    for g, n in enumerate(names):
        nth = int(np.sum(layer[:g] == layer[g]))  # the group's index within its layer
        fig.add_trace(go.Scatter(x=x, y=cum[:, g], name=n, line={
            "width": 1.2, "color": layer_color(int(layer[g])),
            "dash": dashes[nth % len(dashes)]}), row=2, col=1)
    for p in gk.phases(b)[1:]:
        fig.add_vline(x=p.start, line={"dash": "dot", "color": "#888", "width": 1})
    style(fig, f"Grokking: cumulative validation LCA per {kind[:-1]} (negative = lowered the "
          "validation loss)", height=620, ylabel="cumulative LCA")
    fig.update_xaxes(title_text="iteration", row=2, col=1)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(width=1100)
    return fig


def section(b: RunBundle, n_resamples: int = 1000) -> str:
    names, tr, va, kind = gk.components(b)
    ph = gk.phases(b)
    lines = [f"Bundle `{b.path.name}`: {_setup(b)}", "", _milestones(b), "",
             f"Per phase (components are the bundle's {kind}; a phase's LCA sums are exact up "
             "to its residual):", ""]
    lines += phase_table(ph, names)
    lines += unresolved_note(ph, b.method)
    lines += ["", "LCA of the **validation** loss per component and phase:", ""]
    lines += component_table(ph, names, "lca_val")
    lines += ["", "LCA of the **training** loss per component and phase:", ""]
    lines += component_table(ph, names, "lca_train", unresolved(ph))
    lines += ["", "Synchrony (the paper's random-shift test, top-20 local minima per component "
              "or layer, "
              f"shifts in {{−2..2}}, {n_resamples} resamples):", ""]
    lines += [synchrony_line(tr, names, "training loss", n_resamples, kind),
              synchrony_line(va, names, "validation loss", n_resamples, kind)]
    if kind == "groups":  # all heads at once is strict: the layers too
        lines += [synchrony_line(b.lca_layer(), b.layer_names, "training loss", n_resamples,
                                 "layers"),
                  synchrony_line(b.lca_val_layer(), b.layer_names, "validation loss",
                                 n_resamples, "layers")]
    return "\n".join(lines) + "\n"


def write_generated(run: Path, out: Path, figure_path: Path | None, section_fn, figure_fn,
                    alt: str, begin: str, end: str, heading: str | None = None) -> None:
    """Write ``section_fn(bundle)`` (and the figure, linked) between ``begin``/``end`` in
    ``out``; ``heading``: the section to append when ``out`` has no such markers yet."""
    from lcaviz.reports.reproduction import replace_between

    with RunBundle.open(run) as b:
        body = section_fn(b)
        if figure_path is not None:
            from lcaviz.figures.export import figure_image

            figure_path.parent.mkdir(parents=True, exist_ok=True)
            figure_path.write_bytes(figure_image(figure_fn(b), "png"))
            body += f"\n![{alt}]({os.path.relpath(figure_path, out.parent)})\n"
    text = out.read_text() if out.exists() else "# Findings\n"
    if heading is not None and begin not in text:
        text += f"\n## {heading}\n\n{begin}\n{end}\n"
    out.write_text(replace_between(text, begin, end, body))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="regenerate docs/findings.md from a grokking run")
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/findings.md"))
    ap.add_argument("--figure", type=Path, default=None, help="also write the figure as PNG")
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args(argv)
    write_generated(a.run, a.out, a.figure, lambda b: section(b, a.resamples), figure,
                    "Accuracies and cumulative validation LCA per component", BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
