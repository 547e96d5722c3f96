"""How far one step's LCA is from a finer quadrature of the same step (``--lca-error-every``).

At an error iteration the integrator also integrates the step on 4× the Simpson intervals
(:meth:`compute.lca.integrator.LCAIntegrator.refine`, reusing every node it has); that refined
allocation ``A_ref`` is the reference. For each rule R, computed from the same step's nodes —
``first_order`` (g(θ_t)·Δθ), ``trapezoid``, ``rk4`` (Simpson (1,4,1)/6) and ``stored`` (what the
run stores: one of those, or adaptive's composite Simpson) — and each layer, on the device in
float64:

* ``rule_sum``: Σ_i A_R[i] (the layer's LCA under rule R);
* ``abs_error``: Σ_i |A_R[i] − A_ref[i]|;
* ``median_rel``: the median over the layer's parameters with A_ref ≠ 0 of
  |A_R[i] − A_ref[i]| / |A_ref[i]| (NaN if there are none);
* ``flips``: how many of those have sign(A_R[i]) ≠ sign(A_ref[i]) (a zero A_R counts);

plus, per layer, Σ A_ref, Σ |A_ref| and the number of parameters with A_ref ≠ 0. Only these
(L)-sized summaries and the per-parameter ``|A_stored − A_ref|`` of the stored columns are
copied to the host.
"""

from __future__ import annotations

import numpy as np
import torch

from compute.lca.integrator import LCAStep, layer_sums
from lcaviz.bundle.layout import ERROR_RULES, ErrorRecord

RULES = ERROR_RULES  # ("first_order", "trapezoid", "rk4", "stored"): the rules axis


def is_error_iteration(t: int, every: int) -> bool:
    """Iterations 0, K, 2K, ... get an error estimate (none when ``every`` is 0)."""
    return every > 0 and t % every == 0


def _medians(values: torch.Tensor) -> torch.Tensor:
    """Median of each row of (k, n) values as numpy does it (mean of the two middle ones)."""
    n = values.shape[1]
    if n == 0:
        return torch.full((values.shape[0],), float("nan"), dtype=torch.float64,
                          device=values.device)
    s = values.sort(dim=1).values
    return (s[:, (n - 1) // 2] + s[:, n // 2]) / 2


def error_record(t: int, st: LCAStep, layer_index: torch.Tensor, n_layers: int,
                 row_idx: torch.Tensor | None) -> ErrorRecord:
    """Summaries of one refined step, ready for the bundle writer.

    Args:
        t: the iteration.
        st: a step made with ``refine=True``.
        layer_index: (P,) layer of every parameter, on the device.
        n_layers: L.
        row_idx: (P_rows,) flat indices of the columns with per-parameter rows; None = all.
    """
    if st.refined is None:
        raise ValueError("error_record needs a step made with refine=True")
    ref = st.refined.lca.double()
    rules = torch.stack([(st.refined.rules[r] if r != "stored" else st.lca).double()
                         for r in RULES])  # (4, P)
    abs_err = (rules - ref).abs()
    nonzero = ref != 0
    flips = (torch.sign(rules) != torch.sign(ref)) & nonzero
    sums = layer_sums(torch.cat([rules, abs_err, flips.double(),
                                 torch.stack([ref, ref.abs(), nonzero.double()])]),
                      layer_index, n_layers).cpu().numpy()  # (15, L)
    rel = abs_err / torch.where(nonzero, ref.abs(), torch.ones_like(ref))
    order = torch.argsort(layer_index, stable=True)
    rel, nz_sorted = rel[:, order], nonzero[order]
    bounds = np.concatenate([[0], np.cumsum(
        torch.bincount(layer_index, minlength=n_layers).cpu().numpy())])
    medians = torch.stack([_medians(rel[:, a:b][:, nz_sorted[a:b]])
                           for a, b in zip(bounds[:-1], bounds[1:], strict=True)], dim=1)
    k = len(RULES)
    err = abs_err[RULES.index("stored")]
    err = err if row_idx is None else err[row_idx]
    dL = st.loss_after - st.loss_before
    return ErrorRecord(
        iteration=t, error=err.float().cpu().numpy().copy(), intervals=st.refined.intervals,
        ref_residual=dL - float(ref.sum()), rule_sum=sums[:k], abs_error=sums[k:2 * k],
        flips=np.rint(sums[2 * k:3 * k]).astype(np.int64),
        median_rel=medians.cpu().numpy(), ref_layer=sums[3 * k],
        ref_abs_layer=sums[3 * k + 1], nonzero=np.rint(sums[3 * k + 2]).astype(np.int64))
