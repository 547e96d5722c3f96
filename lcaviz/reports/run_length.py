"""Does run length explain our higher % helping? (docs/reproduction.md, issue 15.8.)

The paper's Table 1 averages, over a run's iterations, the share of nonzero per-parameter LCA
that is negative; it does not say how long its MNIST-FC runs were. From one long run this
section gives that same average over the first N iterations for several N (what a run of
length N would report; the same seed and settings make the first N iterations identical to a
shorter run's) and per epoch, so the trend is measured rather than assumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lcaviz.analysis.helping import help_series
from lcaviz.bundle import RunBundle

BEGIN, END = "<!-- BEGIN run-length -->", "<!-- END run-length -->"
LENGTHS = (220, 300, 500, 1000, 1500, 2200)


def helping_by_length(bundle: RunBundle, lengths=LENGTHS) -> list[tuple[int, float]]:
    """(N, Table-1 % helping over iterations 0 … N−1) for each N the run reaches."""
    pct = help_series(bundle).pct_help.to_numpy()  # (T,)
    return [(n, float(np.nanmean(pct[:n]))) for n in lengths if n <= len(pct)]


def helping_by_epoch(bundle: RunBundle, epoch: int) -> list[tuple[int, int, float, float]]:
    """(first, end, % helping averaged over the epoch's iterations, training loss at its end)."""
    pct = help_series(bundle).pct_help.to_numpy()
    loss = bundle.loss_train()
    return [(a, min(a + epoch, len(pct)), float(np.nanmean(pct[a:a + epoch])),
             float(loss[min(a + epoch, len(pct))])) for a in range(0, len(pct), epoch)]


def section(path: Path, paper: str) -> str:
    """The generated body for one long run."""
    with RunBundle.open(path) as b:
        c = b.config
        # an epoch from the training-set size the config records (lca-run since issue 17)
        n = c.get("lca_data_of") or c.get("train_size")
        if not n:
            raise ValueError(f"{path}: the config does not record the training-set size")
        epoch = int(n) // int(c["batch_size"])
        T = b.n_iters
        lengths = sorted({*(n for n in LENGTHS if n < T), T})  # always the whole run
        by_n, by_epoch = helping_by_length(b, lengths), helping_by_epoch(b, epoch)
    out = [f"Run `{path.name}`: `{c['net']}` on `{c['dataset']}`, {c['optimizer']} lr {c['lr']} "
           f"momentum {c['momentum']}, batch {c['batch_size']}, seed {c['seed']}, {T} iterations "
           f"(an epoch = {epoch} iterations), method `{c['method']}`. Paper (Table 1): "
           f"{paper} %.", "",
           "| a run of N iterations would report | " + " | ".join(f"N = {n:,}" for n, _ in by_n)
           + " |", "|---" * (len(by_n) + 1) + "|",
           "| % helping (Table 1 definition) | " + " | ".join(f"{v:.2f}" for _, v in by_n) + " |",
           "", "| epoch | iterations | % helping in the epoch | training loss at its end |",
           "|---|---|---|---|"]
    out += [f"| {k + 1} | {a}–{e - 1} | {v:.2f} | {lo:.4f} |"
            for k, (a, e, v, lo) in enumerate(by_epoch)]
    return "\n".join(out) + "\n"
