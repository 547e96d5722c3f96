"""O(P) oscillation counters kept on the device during a run (paper Section 3: "weight
movements change direction once every 6.7 iterations, and gradients change signs every 9.5").

Per parameter i, over a run of T iterations:

* ``param_moves``: iterations with a nonzero move Δθ_t[i] = θ_{t+1}[i] − θ_t[i];
* ``param_move_changes``: moves whose sign differs from the sign of the parameter's last
  nonzero move (zero moves are skipped: the parameter keeps its last direction);
* ``param_grad_signs``: points θ_0 … θ_T at which the full-dataset gradient g_i is nonzero;
* ``param_grad_changes``: of those, the ones whose sign differs from the last nonzero one.

The gradient is the one the LCA integrator already evaluates at every θ_t (θ_0 at the start,
θ_{t+1} after step t), so counting costs a few O(P) integer operations per iteration and no
stored trajectory. The counters live in :class:`compute.run.checkpoint.RunState`, so checkpoints
carry them and a resumed run counts exactly like an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from lcaviz.bundle.layout import OSC_COUNTERS


def count_signs(last: torch.Tensor, seen: torch.Tensor, changes: torch.Tensor,
                values: torch.Tensor) -> None:
    """Update one family of counters in place with the next values (P,).

    Args:
        last: (P,) int8, the last nonzero sign (0 before the first one).
        seen: (P,) int32, how many nonzero values there were.
        changes: (P,) int32, how many of them changed sign against ``last``.
        values: (P,) the next moves or gradients.
    """
    s = torch.sign(values).to(torch.int8)
    nonzero = s != 0
    changes += (nonzero & (last != 0) & (s != last)).to(changes.dtype)
    seen += nonzero.to(seen.dtype)
    last.copy_(torch.where(nonzero, s, last))


def count_move(state, delta: torch.Tensor) -> None:
    """Count the move Δθ_t of one iteration."""
    count_signs(state.move_sign, state.param_moves, state.param_move_changes, delta)


def count_gradient(state, grad: torch.Tensor) -> None:
    """Count the full-dataset gradient at one θ_t."""
    count_signs(state.grad_sign, state.param_grad_signs, state.param_grad_changes, grad)


def oscillation_counters(state, layer_index: torch.Tensor, n_layers: int
                         ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Host copies of the (P,) counters and their (L, 6) per-layer sums.

    Returns:
        ``({name: (P,) int32}, (L, 6) int64)`` with the columns of
        :data:`lcaviz.bundle.layout.OSC_LAYER_COLUMNS`: moves, move_changes, moving
        (parameters with at least one move), grad_signs, grad_changes, grad_nonzero
        (parameters with at least one nonzero gradient).
    """
    moves, grads = state.param_moves, state.param_grad_signs
    cols = torch.stack([moves, state.param_move_changes, moves > 0,
                        grads, state.param_grad_changes, grads > 0]).long()  # (6, P)
    layer = torch.zeros((6, n_layers), dtype=torch.int64, device=cols.device)
    layer.index_add_(1, layer_index, cols)
    return ({name: getattr(state, name).cpu().numpy() for name in OSC_COUNTERS},
            layer.T.cpu().numpy())
