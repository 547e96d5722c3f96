"""The paper's last-layer claims (Sec. 5), each tested over seeds with an honest verdict.

Every claim is reduced to one number per seed, oriented so that a positive value means the
paper's claim holds (for example "the first layer hurts" is the first layer's total LCA;
"freezing trains better" is the regular run's final loss minus the frozen run's, paired by
seed: the same seed gives the same initialisation and batch order). The verdict is:

* **within error** when the mean effect is smaller than the LCA error of the runs involved
  (the largest cumulative |Σ residual|; only for claims about LCA) or than the seed spread
  (the standard deviation over seeds);
* otherwise **agrees** or **differs** when a two-sided one-sample t-test over seeds gives
  p < 0.05 (with one seed there is no test and the verdict says so), else **not significant**.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass
class Claim:
    """One claim, its per-seed values (positive = as the paper says) and the verdict."""

    text: str
    paper: str
    seeds: list[int]
    values: np.ndarray  # (S,) per seed
    lca_error: float | None  # absolute LCA error bound of the runs involved; None for losses
    p: float | None
    verdict: str


def verdict(values: np.ndarray, lca_error: float | None) -> tuple[float | None, str]:
    """(p, verdict) for per-seed values whose positive sign means the claim holds."""
    mean = float(values.mean())
    spread = float(values.std(ddof=1)) if values.size > 1 else 0.0
    if lca_error is not None and abs(mean) < lca_error:
        return None, "within error (smaller than the LCA residual)"
    if abs(mean) < spread:
        return None, "within error (smaller than the seed spread)"
    if values.size < 2:
        return None, ("agrees" if mean > 0 else "differs") + " (one seed, no test)"
    if spread == 0.0:
        return 0.0, "agrees" if mean > 0 else "differs"
    p = float(stats.ttest_1samp(values, 0.0).pvalue)
    if p >= ALPHA:
        return p, "not significant"
    return p, "agrees" if mean > 0 else "differs"


def _by_treatment(runs: Sequence) -> dict[str, dict[int, object]]:
    out: dict[str, dict[int, object]] = {}
    for r in runs:
        out.setdefault(r.treatment, {})[r.seed] = r
    return out


def _paired(groups: dict, a: str, b: str | None,
            value: Callable, lca: bool) -> tuple[list[int], np.ndarray, float | None] | None:
    """Per-seed values of ``value(run_a, run_b)`` over seeds present in both treatments."""
    if a not in groups or (b is not None and b not in groups):
        return None
    seeds = sorted(set(groups[a]) & (set(groups[b]) if b else set(groups[a])))
    if not seeds:
        return None
    pairs = [(groups[a][s], groups[b][s] if b else None) for s in seeds]
    vals = np.array([value(x, y) for x, y in pairs], dtype=float)
    err = max(max(x.residual_abs, y.residual_abs if y else 0.0) for x, y in pairs) if lca else None
    return seeds, vals, err


def _sweep_slopes(runs: Sequence, series: Callable) -> tuple[list[int], np.ndarray, float] | None:
    """Per seed, the slope of ``series(run)`` against the last layer's momentum delay."""
    seeds, slopes, err = [], [], 0.0
    for seed in sorted({r.seed for r in runs}):
        sweep = [r for r in runs if r.seed == seed and r.delay is not None
                 and (r.treatment == "regular" or r.treatment.startswith("delay"))]
        if len({r.delay for r in sweep}) < 3:
            continue
        d = np.array([r.delay for r in sweep])
        slopes.append(float(np.polyfit(d, [series(r) for r in sweep], 1)[0]))
        seeds.append(seed)
        # errors of at most e at each delay can tilt a line over a range D by up to 2e/D
        err = max(err, 2 * max(r.residual_abs for r in sweep) / max(float(np.ptp(d)), 1e-30))
    return (seeds, np.array(slopes), err) if seeds else None


def claims(runs: Sequence) -> list[Claim]:
    """Every last-layer claim the runs can test (needs a "regular" treatment for most)."""
    g = _by_treatment(runs)
    lr_keys = sorted(t for t in g if t.startswith("lr "))
    specs: list[tuple[str, str, tuple | None]] = [
        ("First layer hurts over training (regular)", "yes, p < 1e-4 over 10 runs",
         _paired(g, "regular", None, lambda r, _: r.totals[0], True)),
        ("Last layer hurts over training (regular)", "yes, p < 1e-4",
         _paired(g, "regular", None, lambda r, _: r.totals[-1], True)),
        ("Every middle layer helps (regular; value: −max middle-layer total)", "yes, p < 1e-4",
         _paired(g, "regular", None, lambda r, _: -r.totals[1:-1].max(), True)),
        ("Last layer hurts in the first iterations (regular)", "its LCA is typically high",
         _paired(g, "regular", None, lambda r, _: r.early[-1], True)),
        ("Freezing the last layer lowers the final train loss (regular − frozen)",
         "yes, p < 0.001", _paired(g, "regular", "frozen",
                                   lambda r, f: r.loss_final - f.loss_final, False)),
        ("With the last layer frozen, the other layers help less (frozen − regular)",
         "yes, especially the adjacent ones",
         _paired(g, "frozen", "regular",
                 lambda f, r: f.totals[:-1].sum() - r.totals[:-1].sum(), True)),
    ]
    for key in lr_keys:
        specs.append((f"Last layer at {key} lowers the final train loss (regular − {key})",
                      "like freezing", _paired(g, "regular", key,
                                               lambda r, x: r.loss_final - x.loss_final, False)))
    specs.append(("Less delay for the last layer makes it help more (slope of its LCA in d)",
                  "fairly linear, hurting at d = 9",
                  _sweep_slopes(runs, lambda r: r.totals[-1])))
    specs.append(("…and the other layers help less (−slope of their LCA in d)",
                  "they hurt more as the last layer helps more",
                  _sweep_slopes(runs, lambda r: -r.totals[:-1].sum())))
    for key in lr_keys:  # the effective-step control: same lr / (1 - m), different freshness
        if "delay 0" in g:
            specs.append((f"Fresher information, not the step: delay 0 helps more than {key} at "
                          f"the same lr/(1−m) ({key} − delay 0)", "(control; not in the paper)",
                          _paired(g, key, "delay 0", lambda x, d: x.totals[-1] - d.totals[-1],
                                  True)))
    out = []
    for text, paper, got in specs:
        if got is None:
            continue
        seeds, vals, err = got
        p, v = verdict(vals, err)
        out.append(Claim(text, paper, seeds, vals, err, p, v))
    return out


def claims_table(cs: Sequence[Claim]) -> list[str]:
    """Markdown rows: claim, paper, ours (mean ± std over seeds), LCA error, p, verdict."""
    rows = ["| claim | paper | ours: mean ± std (seeds) | LCA error bound | p | verdict |",
            "|---|---|---|---|---|---|"]
    for c in cs:
        sd = f" ± {c.values.std(ddof=1):.3g}" if c.values.size > 1 else ""
        seeds = ", ".join(str(s) for s in c.seeds)
        err = "—" if c.lca_error is None else f"{c.lca_error:.2g}"
        p = "—" if c.p is None else f"{c.p:.2g}"
        rows.append(f"| {c.text} | {c.paper} | {c.values.mean():+.4g}{sd} ({seeds}) | {err} | "
                    f"{p} | {c.verdict} |")
    return rows
