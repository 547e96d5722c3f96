"""Generate docs/reproduction.md: the paper's headline measurements, on our own bundles.

    python -m lcaviz.reports.reproduction [--runs sample_runs] [--extra runs/]
        [--out docs/reproduction.md] [--last-layer runs/last_layer]

The committed section is made from ``--runs`` (the repository's sample runs) and is regenerated
by the test suite, which checks that the file on disk is exactly what the bundles give. Runs in
``--extra`` (kept outside the repository) add a second section, and ``--last-layer`` the
runs of ``scripts/make_last_layer_runs.py`` a third (see :mod:`lcaviz.reports.layer_experiments`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from lcaviz.analysis.summary import summarize

BEGIN, END = "<!-- BEGIN sample-runs -->", "<!-- END sample-runs -->"
EXTRA_BEGIN, EXTRA_END = "<!-- BEGIN extra-runs -->", "<!-- END extra-runs -->"
LAST_BEGIN, LAST_END = "<!-- BEGIN last-layer -->", "<!-- END last-layer -->"

# Table 1 of Lan et al. (2019): % helping among nonzero LCA, mean ± std over 3 runs.
PAPER_HELPING = {
    ("mnist_fc", "sgd", 0.0): "53.72 ± 0.05", ("mnist_fc", "sgd", 0.9): "57.79 ± 0.16",
    ("mnist_fc", "adam", None): "55.82 ± 0.09", ("lenet", "sgd", 0.9): "53.97 ± 0.48",
    ("lenet", "adam", None): "51.77 ± 0.21", ("resnet20", "sgd", 0.9): "50.66 ± 0.14",
    ("resnet20", "adam", None): "50.30 ± 0.004", ("allcnn", "sgd", 0.9): "51.09 ± 0.23",
    ("allcnn", "adam", None): "50.19 ± 0.01",
}


def _paper_helping(cfg: dict) -> str:
    mom = None if cfg.get("optimizer") == "adam" else cfg.get("momentum")
    return PAPER_HELPING.get((cfg.get("net"), cfg.get("optimizer"), mom), "–")


def _f(x, fmt: str = ".3g") -> str:
    return "–" if x is None else format(x, fmt)


def run_rows(summary: dict, config: dict, name: str) -> tuple[str, str]:
    """(headline table row, per-run detail block) for one summarised bundle."""
    r, h, w, t, s = (summary[k] for k in ("run", "helping", "weibull", "tail", "synchrony"))
    hurting = [lay["name"] for lay in summary["layers"] if lay["hurts"]]
    setup = (f"{r['net']}, {r['optimizer']}"
             + (f" m={config.get('momentum')}" if r["optimizer"] == "sgd" else "")
             + f", lr {config.get('lr')}, {r['n_iters']} it, seed {config.get('seed')}, "
             f"rows `{r['rows']}`")
    sync = (f"{s['actual_mean_per_class']:.2f} vs {s['baseline_mean_per_class']:.2f} "
            f"(p = {s['p_value']:.3g})") if s else "–"
    v = summary["values"]
    values = (f"{v['n_rows']} single iterations" if v["per_iteration"] else
              v["rows"].split(" (")[0])  # "window sums of 25 iterations"
    row = (f"| {name} | {setup} | {h['pct_help']:.2f} | {_paper_helping(config)} | "
           f"{h['pct_zero']:.1f} | {_f(w['help']['k'])} / {_f(w['hurt']['k'])} | {values} | "
           f"{_f(t['contribution_ratio'], '.1f')} | {', '.join(hurting) or 'none'} | {sync} |")
    layers = "\n".join(
        f"| {lay['name']} | {lay['size']:,} | {lay['total']:.4g} | {lay['pct_help']:.2f} | "
        f"{lay['pct_zero']:.1f} |" for lay in summary["layers"])
    osc = summary.get("oscillation")
    n = config.get("train_size")
    subset = f" (first {n} training images)" if n else ""
    detail = (
        f"### {name}\n\n"
        f"`{config.get('net')}` on `{config.get('dataset')}`{subset}"
        f", {r['n_iters']} iterations, method `{r['method']}`, per-parameter rows "
        f"`{r['rows']}`. Loss {r['initial_loss']:.4f} → {r['final_loss']:.4f}; "
        f"ΣLCA = {r['lca_total']:.4f}; max |residual| per iteration "
        f"{r['residual_abs_max']:.2e}; cumulative residual "
        f"{100 * abs(r['residual_total']) / abs(r['loss_change']):.4f} % of the loss change.\n\n"
        f"Value statistics (Weibull, tails) use {v['rows']}"
        + ("" if len(v["layers"]) == r["n_layers"] else
           f", layers {', '.join(v['layers'])} (the only ones with per-parameter rows)")
        + ".\n"
        f"Tails beyond 3σ: {100 * t['frac_beyond']:.3f} % of values (Gaussian "
        f"{100 * t['gaussian_frac']:.3f} %, ratio {t['ratio']:.2f}), carrying "
        f"{100 * t['contribution_beyond']:.1f} % of Σ|LCA| (Gaussian "
        f"{100 * t['gaussian_contribution']:.2f} %).\n"
        + (f"Weight movement changes direction every {_f(osc.get('iters_per_change'))} "
           "iterations.\n" if osc else "")
        + "\n| layer | params | total LCA | % help | % zero |\n|---|---|---|---|---|\n"
        + layers + "\n")
    return row, detail


HEADER = ("| run | setup | % helping (ours) | % helping (paper, Table 1) | % zero | "
          "Weibull k help / hurt | k from | tail share vs Gaussian | layers that hurt | "
          "aligned peaks per class vs shift baseline |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def summarize_dir(runs_dir: Path) -> list[tuple[str, dict, dict]]:
    """(name, summary, config) for every bundle in ``runs_dir``, sorted by name."""
    from lcaviz.bundle import RunBundle

    out = []
    for path in sorted(runs_dir.glob("*.h5")):
        with RunBundle.open(path) as b:
            out.append((path.stem, summarize(b), b.config))
    return out


def section(runs: list[tuple[str, dict, dict]], label: str) -> str:
    """Markdown headline table and detail blocks for summarised runs."""
    rows, details = [], []
    for name, summary, config in runs:
        row, detail = run_rows(summary, config, name)
        rows.append(row)
        details.append(detail)
    return f"Bundles in `{label}`.\n\n{HEADER}\n" + "\n".join(rows) + "\n\n" + "\n".join(details)


SETUP_KEYS = ("net", "dataset", "train_size", "optimizer", "lr", "momentum", "batch_size", "iters",
              "method")


def seeds_table(runs: list[tuple[str, dict, dict]]) -> str:
    """Table-1 style mean ± std over seeds, for setups run with two or more seeds."""
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for _, summary, config in runs:
        key = tuple(config.get(k) if k != "momentum" or config.get("optimizer") == "sgd"
                    else None for k in SETUP_KEYS)
        groups.setdefault(key, []).append((config.get("seed"), summary))
    lines = []
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        seeds = sorted({s for s, _ in members})
        if len(seeds) < 2:
            continue
        helping = np.array([m["helping"]["pct_help"] for _, m in members])
        zero = np.array([m["helping"]["pct_zero"] for _, m in members])
        cfg = dict(zip(SETUP_KEYS, key, strict=True))
        lines.append(f"| {cfg['net']}, {cfg['optimizer']}"
                     + (f" m={cfg['momentum']}" if cfg["optimizer"] == "sgd" else "")
                     + f", lr {cfg['lr']}, {cfg['iters']} it | {len(members)} "
                     f"(seeds {', '.join(map(str, seeds))}) | {helping.mean():.2f} ± "
                     f"{helping.std(ddof=1):.2f} | {_paper_helping(cfg)} | {zero.mean():.1f} ± "
                     f"{zero.std(ddof=1):.1f} |")
    if not lines:
        return ""
    return ("Across seeds (all bundles above and in the sample runs; std over runs, ddof 1).\n\n"
            "| setup | runs | % helping | paper | % zero |\n|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n\n")


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]
    return text.rstrip() + f"\n\n{begin}\n{body}\n{end}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="regenerate docs/reproduction.md from bundles")
    ap.add_argument("--runs", type=Path, default=Path("sample_runs"))
    ap.add_argument("--extra", type=Path, default=None, help="bundles kept outside the repo")
    ap.add_argument("--last-layer", type=Path, default=None,
                    help="runs made by scripts/make_last_layer_runs.py")
    ap.add_argument("--last-layer-figure", type=Path, default=None,
                    help="also write the last-layer runs' per-layer bars as PNG here")
    ap.add_argument("--run-length", type=Path, default=None,
                    help="one long MNIST-FC run: %% helping by run length and by epoch")
    ap.add_argument("--causal", type=Path, default=None,
                    help="runs made by scripts/make_causal_runs.py")
    ap.add_argument("--out", type=Path, default=Path("docs/reproduction.md"))
    a = ap.parse_args(argv)
    text = a.out.read_text() if a.out.exists() else "# Reproduction\n"
    sample = summarize_dir(a.runs)
    text = replace_between(text, BEGIN, END, section(sample, a.runs.as_posix()))
    if a.extra is not None:
        extra = summarize_dir(a.extra)
        body = seeds_table(sample + extra) + section(extra, a.extra.name)
        text = replace_between(text, EXTRA_BEGIN, EXTRA_END, body)
    if a.last_layer is not None:
        from lcaviz.reports import layer_experiments as lx

        runs = lx.load_runs(a.last_layer)
        body = lx.section(runs, a.last_layer.as_posix())
        if a.last_layer_figure is not None and runs:
            from lcaviz.figures.export import figure_image

            a.last_layer_figure.parent.mkdir(parents=True, exist_ok=True)
            a.last_layer_figure.write_bytes(figure_image(lx.figure(runs), "png"))
            rel = os.path.relpath(a.last_layer_figure, a.out.parent)
            body += f"\n![Total LCA per layer, one bar series per run]({rel})\n"
        text = replace_between(text, LAST_BEGIN, LAST_END, body)
    if a.run_length is not None:
        from lcaviz.bundle import RunBundle
        from lcaviz.reports import run_length

        with RunBundle.open(a.run_length) as b:
            paper = _paper_helping(b.config)
        text = replace_between(text, run_length.BEGIN, run_length.END,
                               run_length.section(a.run_length, paper))
    if a.causal is not None:
        from lcaviz.reports import causal

        text = replace_between(text, causal.BEGIN, causal.END,
                               causal.section(causal.load_runs(a.causal), a.causal.as_posix()))
    a.out.write_text(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
