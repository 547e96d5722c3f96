"""The per-run accumulators of the engine: what a checkpoint (``lca-run``'s ``.ckpt`` or
``LCATracker.state_dict()``) must carry to continue a bundle bit for bit."""

from __future__ import annotations

import torch

from lcaviz.bundle.layout import OSC_COUNTERS


class RunState:
    """Per-run accumulators that a checkpoint must carry (all on the device)."""

    def __init__(self, P: int, P_rows: int, device, val: bool):
        f64 = torch.float64
        self.window = torch.zeros(P_rows, dtype=f64, device=device)  # the open row's sums
        self.window_val = torch.zeros(P_rows, dtype=f64, device=device) if val else None
        self.help_iters = torch.zeros(P, dtype=torch.int32, device=device)
        self.nonzero_iters = torch.zeros(P, dtype=torch.int32, device=device)
        # oscillation counters (compute.lca.oscillation): the last nonzero sign of each parameter's
        # move and of its full-dataset gradient, and how often each was seen and changed
        for name in ("move_sign", "grad_sign"):
            setattr(self, name, torch.zeros(P, dtype=torch.int8, device=device))
        for name in OSC_COUNTERS:
            setattr(self, name, torch.zeros(P, dtype=torch.int32, device=device))
        # whole-run conservation, in float64 on the host: Σ residual, Σ |residual|, Σ ΔL,
        # Σ |ΔL|; and how many adaptive steps hit --max-halvings without meeting the tolerance
        self.error_sums = torch.zeros(4, dtype=f64)
        self.hit_max = torch.zeros((), dtype=torch.int64)

    def state_dict(self) -> dict:
        return {k: v.cpu() for k, v in vars(self).items() if v is not None}

    def load(self, d: dict) -> None:
        """Restore a checkpoint's state (one written before a counter existed leaves it 0)."""
        for k, v in d.items():
            getattr(self, k).copy_(v)
