"""Per-example LCA of a grokking run: which components lowered the loss of which training
examples in each phase (:mod:`lcaviz.analysis.grokking` defines the phases).

A phase's per-example values are the sums of the bundle's ``lca_example`` rows whose windows
start inside it, times N (``per_example_of``), so each value is the change of that example's
own loss ℓ_n that a component made; the mean over all N examples is the component's LCA of the
training loss in those rows. Rows are whole windows, so a phase here starts and ends at the row
boundaries nearest to its accuracy marks: the report states the iterations it covers.

Per phase and component we report

* ``mean``: the mean change of an example's loss (= the component's share of ΔL_train),
* ``lowered``: the fraction of examples whose loss the component lowered,
* ``cancelled``: 1 − |Σ_n x_n| / Σ_n |x_n|, how much of the component's per-example changes
  cancel between examples (0: it moved every example the same way; 1: it only moved losses
  from some examples to others) — invisible in the per-layer LCA, which holds only Σ_n,
* ``top10``: the share of Σ_n |x_n| carried by the 10 % of examples it changed most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lcaviz.analysis import grokking as gk


@dataclass
class ExamplePhase:
    """One phase in whole row windows: rows [r0, r1), iterations [start, end)."""

    name: str
    r0: int
    r1: int
    start: int
    end: int
    x: np.ndarray  # (N_e, L) N · Σ E over the rows: the change of each example's own loss
    loss_start: np.ndarray | None  # (N_e,) ℓ_n at ``start`` (None: not stored)


Span = tuple[str, int, int]


def phase_rows(windows: np.ndarray, marks: list[Span]) -> list[Span]:
    """Each phase ``(name, start, end)`` as the rows ``(name, r0, r1)`` whose windows start in
    it, boundaries moved to the nearest row start; phases left with no row are dropped."""
    starts = windows[:, 0]
    out = []
    for name, a, c in marks:
        r0 = int(np.argmin(np.abs(starts - a)))
        r1 = len(starts) if c >= int(windows[-1, 1]) else int(np.argmin(np.abs(starts - c)))
        if r1 > r0:
            out.append((name, r0, r1))
    return out


def example_phases(b, split: str = "train", by: str = "layer") -> list[ExamplePhase]:
    """The phases of :func:`lcaviz.analysis.grokking.phases`, per tracked example.

    Args:
        b: the bundle.
        split: ``"train"`` or ``"val"`` (the validation examples, with ``--val-lca``).
        by: ``"layer"`` or ``"group"`` (the split groups: attention heads); per-group phases
            carry no losses (a loss does not split by group).

    Raises:
        ValueError: the bundle has no per-example LCA (of that split or by), or no validation
            LCA.
    """
    if not getattr(b, "has_examples", False):
        raise ValueError(f"{b.path}: no per-example LCA (run it with --per-example)")
    key = "per_example_val_of" if split == "val" else "per_example_of"
    n_e = b.n_val_examples if split == "val" else b.n_examples
    n = int(b.config.get(key) or n_e)
    windows = np.asarray(b.row_windows)
    marks = [(p.name, p.start, p.end) for p in gk.phases(b)]
    rows = b.example_lca_rows(split=split, by=by)  # (R, N_e, L or G_s)
    losses = b.example_loss(split=split) if by == "layer" else None  # (R, N_e) or None
    out = []
    for name, r0, r1 in phase_rows(windows[:len(rows)], marks):
        out.append(ExamplePhase(name, r0, r1, int(windows[r0, 0]), int(windows[r1 - 1, 1]),
                                n * rows[r0:r1].sum(0),
                                None if losses is None else losses[r0]))
    return out


def component_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per column of ``x`` (N_e, L): mean, lowered, cancelled and top10 (module docstring)."""
    gross = np.abs(x).sum(0)
    safe = np.where(gross > 0, gross, 1.0)
    k = max(1, int(np.ceil(0.1 * len(x))))
    top = -np.sort(-np.abs(x), axis=0)[:k].sum(0)
    return {"mean": x.mean(0), "lowered": (x < 0).mean(0),
            "cancelled": np.where(gross > 0, 1 - np.abs(x.sum(0)) / safe, np.nan),
            "top10": np.where(gross > 0, top / safe, np.nan)}


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of two (N,) vectors (average ranks for ties)."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def example_residual(p: ExamplePhase, loss_end: np.ndarray | None) -> np.ndarray | None:
    """(N_e,) Δℓ_n − Σ_l x[n, l] over the phase: the per-example quadrature residual (None
    when the bundle stores no per-example losses)."""
    if p.loss_start is None or loss_end is None:
        return None
    return (loss_end - p.loss_start) - p.x.sum(1)


def phase_end_losses(b, ph: list[ExamplePhase], split: str = "train"
                     ) -> list[np.ndarray | None]:
    """ℓ_n at the end of each phase: the next row's start, or after the last iteration."""
    losses = b.example_loss(split=split)
    if losses is None:
        return [None] * len(ph)
    last = b.example_loss_last(split=split)
    return [losses[p.r1] if p.r1 < len(losses) else last for p in ph]


def anti_correlated(x: np.ndarray, names: list[str], n: int = 3) -> list[tuple[str, str, float]]:
    """The ``n`` pairs of components whose per-example values in ``x`` (N_e, L) are most
    negatively rank-correlated across examples (where one lowered an example's loss, the
    other raised it), most negative first; components that changed nothing are left out."""
    live = [i for i in range(x.shape[1]) if np.abs(x[:, i]).sum() > 0]
    pairs = [(names[i], names[j], rank_correlation(x[:, i], x[:, j]))
             for k, i in enumerate(live) for j in live[k + 1:]]
    pairs = [p for p in pairs if np.isfinite(p[2])]
    return sorted(pairs, key=lambda p: p[2])[:n]
