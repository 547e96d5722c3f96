"""The causal-test section of docs/reproduction.md (issue 15.3), from the runs of
``scripts/make_causal_runs.py``: per seed a ``plain`` run with ``--counterfactual-every`` and a
``masked`` run with ``--update-mask helping`` from the same initialisation and minibatches.

Two tables: what the partial steps of the plain runs did to the full training loss, and the
masked runs' losses and accuracies against the plain ones, paired by seed (mean ± std over
seeds and a paired t-test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from lcaviz.analysis.counterfactual import counterfactual_summary
from lcaviz.bundle import RunBundle

BEGIN, END = "<!-- BEGIN causal -->", "<!-- END causal -->"


@dataclass
class CausalRun:
    """What the section reads from one run."""

    name: str
    seed: int
    masked: bool
    iters: int
    loss: np.ndarray  # (T + 1,) full training loss at θ_0 … θ_T
    acc: np.ndarray  # (T + 1,)
    val_loss: np.ndarray | None
    val_acc: np.ndarray | None
    cf: dict | None  # counterfactual_summary, plain runs only


def load_runs(folder: Path) -> list[CausalRun]:
    """Every complete bundle in ``folder`` (sorted by name)."""
    out = []
    for path in sorted(Path(folder).glob("*.h5")):
        with RunBundle.open(path) as b:
            if b.status != "complete":
                continue
            out.append(CausalRun(
                path.name, int(b.config["seed"]), b.config.get("update_mask") == "helping",
                b.n_iters, b.loss_train(), b.accuracy_train(), b.loss_val(), b.accuracy_val(),
                counterfactual_summary(b)))
    return out


def _ms(values, spec: str) -> str:
    v = np.asarray(values, float)
    if v.size == 1:
        return format(v[0], spec)
    return f"{format(v.mean(), spec)} ± {format(v.std(ddof=1), spec)}"


CF_COLUMNS = [("sampled steps", "n", "d"),
              ("% steps: helping part lowers L", "pct_help_lowers", ".1f"),
              ("% steps: hurting part raises L", "pct_hurt_raises", ".1f"),
              ("ΔL / ΣLCA, helping part", "median_ratio_help", ".3f"),
              ("ΔL / ΣLCA, hurting part", "median_ratio_hurt", ".3f"),
              ("ΔL_help / ΔL", "median_help_over_dL", ".2f"),
              ("\\|interaction\\| / \\|ΔL\\|", "median_abs_interaction", ".2f")]


def cf_table(runs: list[CausalRun]) -> str:
    """Per plain run and mean ± std: the partial steps (medians over sampled steps)."""
    plain = [r for r in runs if not r.masked and r.cf]
    if not plain:
        return "No run with `--counterfactual-every` in this folder.\n"
    head = "| run | " + " | ".join(c[0] for c in CF_COLUMNS) + " |"
    out = [head, "|" + "---|" * (len(CF_COLUMNS) + 1)]
    for r in plain:
        out.append(f"| {r.name} | " + " | ".join(format(r.cf[k], s) for _, k, s in CF_COLUMNS)
                   + " |")
    if len(plain) > 1:
        out.append("| **mean ± std over seeds** | " + " | ".join(
            _ms([r.cf[k] for r in plain], s if s != "d" else ".0f") for _, k, s in CF_COLUMNS)
            + " |")
    return "\n".join(out) + "\n"


def _paired_row(label: str, a: np.ndarray, b: np.ndarray, spec: str) -> str:
    d = b - a
    p = "–" if d.size < 2 or np.all(d == d[0]) else f"{stats.ttest_rel(b, a).pvalue:.3g}"
    return f"| {label} | {_ms(a, spec)} | {_ms(b, spec)} | {_ms(d, spec)} | {p} |"


def mask_table(runs: list[CausalRun]) -> str:
    """Plain vs masked, paired by seed: final and mean losses, final accuracies."""
    plain = {r.seed: r for r in runs if not r.masked}
    masked = {r.seed: r for r in runs if r.masked}
    seeds = sorted(set(plain) & set(masked))
    if not seeds:
        return "No plain/masked pair of the same seed in this folder.\n"
    P, M = [plain[s] for s in seeds], [masked[s] for s in seeds]
    T = min(r.iters for r in P + M)
    half = T // 2

    def col(rs, f):
        return np.array([f(r) for r in rs], float)

    rows = [("training loss at θ_T", lambda r: r.loss[T], ".4f"),
            (f"training loss at θ_{half}", lambda r: r.loss[half], ".4f"),
            ("mean training loss over θ_0…θ_T", lambda r: r.loss[: T + 1].mean(), ".4f"),
            ("training accuracy at θ_T (%)", lambda r: 100 * r.acc[T], ".2f")]
    if all(r.val_loss is not None for r in P + M):
        rows += [("validation loss at θ_T", lambda r: r.val_loss[T], ".4f"),
                 ("validation accuracy at θ_T (%)", lambda r: 100 * r.val_acc[T], ".2f")]
    out = [f"Seeds {', '.join(map(str, seeds))}; {T} iterations; mean ± std over seeds; p of a "
           "paired t-test (masked − plain, same seed = same initialisation and minibatches).",
           "", "| quantity | plain | masked (helping only) | masked − plain | p |",
           "|---|---|---|---|---|"]
    out += [_paired_row(label, col(P, f), col(M, f), spec) for label, f, spec in rows]
    return "\n".join(out) + "\n"


def section(runs: list[CausalRun], folder: str) -> str:
    """The generated body between :data:`BEGIN` and :data:`END`."""
    if not runs:
        return f"\nNo complete runs in `{folder}`.\n\n"
    return (f"\nGenerated from {len(runs)} runs in `{folder}` (`scripts/make_causal_runs.py`).\n"
            "\n**The partial steps** (plain runs, every 10th step; medians over the sampled "
            "steps):\n\n" + cf_table(runs)
            + "\n**Training only on the helping coordinates** (`--update-mask helping`):\n\n"
            + mask_table(runs) + "\n")
