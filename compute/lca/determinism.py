"""Whether the allocated loss is a deterministic function of θ (the objective evaluates its first
θ twice and compares; :class:`compute.lca.objective.FullDatasetObjective`)."""

from __future__ import annotations

import torch

# How far two evaluations at one θ may differ: the loss (relative), the gradient (relative L2,
# 100× more: it sums more terms). On CPU they are bit-identical. GPU kernels that accumulate
# with atomics reorder sums: a few ulps (float32 eps 1.2e-7; float64 ~1e-15). Dropout of p = 0.01
# in forward moves the loss ~1e-3 relative on 1,000 examples (~1/√N: still ~1e-4 on 60,000).
DETERMINISM_RTOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3}
DETERMINISM_RTOL_LOW = 1e-2  # bfloat16 (eps 7.8e-3) and anything else
GRAD_RTOL_FACTOR = 100.0


class NondeterministicLossError(ValueError):
    """Two evaluations of the full loss at the same θ differed: LCA cannot allocate it."""


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / max(‖a‖, ‖b‖), 0 when both are 0; in float64."""
    a, b = a.double(), b.double()
    scale = float(torch.maximum(a.norm(), b.norm()))
    return float((a - b).norm()) / scale if scale > 0 else 0.0


def check_same_evaluation(loss_a: torch.Tensor, loss_b: torch.Tensor,
                          grad_a: torch.Tensor | None, grad_b: torch.Tensor | None,
                          dtype: torch.dtype) -> None:
    """Raise :class:`NondeterministicLossError` unless two evaluations at one θ agree: the
    loss to ``DETERMINISM_RTOL[dtype]`` relative, the gradient to ``GRAD_RTOL_FACTOR`` times
    that in relative L2 norm."""
    rtol = DETERMINISM_RTOL.get(dtype, DETERMINISM_RTOL_LOW)
    loss_diff = _rel_diff(loss_a, loss_b)
    grad_diff = _rel_diff(grad_a, grad_b) if grad_a is not None else 0.0
    if loss_diff <= rtol and grad_diff <= GRAD_RTOL_FACTOR * rtol:
        return
    raise NondeterministicLossError(
        f"the full-dataset loss is not a deterministic function of the parameters: two "
        f"evaluations at the same θ gave losses {float(loss_a)!r} and {float(loss_b)!r} "
        f"(relative difference {loss_diff:.1e}, gradient {grad_diff:.1e}; allowed "
        f"{rtol:g} and {GRAD_RTOL_FACTOR * rtol:g}), so LCA cannot allocate its change. "
        "Dropout modules are switched off, but randomness the model draws itself is not: "
        "functional dropout such as F.dropout(x, p, training=True) (pass "
        "training=self.training instead), noise or random augmentation inside forward() "
        "(torch.rand/randn/randint, random crops or flips), or a custom module that is "
        "random in eval mode. On a GPU, nondeterministic kernels beyond this tolerance "
        "can be ruled out with torch.use_deterministic_algorithms(True).")
