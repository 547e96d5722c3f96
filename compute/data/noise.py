"""Label noise for memorisation experiments (``lca-run --label-noise F``).

A seeded fraction of the training labels is changed, each to a *different* class drawn
uniformly from the other C − 1; which examples were flipped and their true labels are returned
so that a run can store them (``label_noise/flipped``, ``label_noise/original`` in the bundle)
and per-example LCA can be read against them.
"""

from __future__ import annotations

import numpy as np
import torch

NOISE_STREAM = 31  # SeedSequence([seed, 31]): independent of the data order and subsets


def flip_labels(y: torch.Tensor, fraction: float, n_classes: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flip ``round(fraction · N)`` labels, each to another class.

    Args:
        y: (N,) integer class labels in 0..n_classes−1.
        fraction: share of the examples to flip, in [0, 1].
        n_classes: C >= 2.
        seed: the same seed flips the same examples to the same labels.

    Returns:
        ``(y_noisy, flipped_idx, original_labels)``: y_noisy like ``y`` (a new tensor, same
        dtype and device), flipped_idx (K,) int64 sorted positions, original_labels (K,)
        int64 their true labels (both on the CPU).

    Raises:
        ValueError: a fraction outside [0, 1], fewer than 2 classes, or labels that are not
            integers in range.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"label noise fraction must be in [0, 1], got {fraction!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {n_classes!r}")
    labels = torch.as_tensor(y)
    if labels.is_floating_point() or labels.dim() != 1:
        raise ValueError("label noise needs a 1-D tensor of integer class labels")
    cpu = labels.detach().cpu().long()
    if len(cpu) and (int(cpu.min()) < 0 or int(cpu.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got "
                         f"[{int(cpu.min())}, {int(cpu.max())}]")
    n = len(cpu)
    k = int(round(float(fraction) * n))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), NOISE_STREAM]))
    flipped = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    shift = rng.integers(1, n_classes, size=k)  # 1..C−1: never the same class
    original = cpu.numpy()[flipped]
    noisy = cpu.clone()
    noisy[torch.from_numpy(flipped)] = torch.from_numpy((original + shift) % n_classes)
    return (noisy.to(device=labels.device, dtype=labels.dtype), torch.from_numpy(flipped),
            torch.from_numpy(original.astype(np.int64)))
