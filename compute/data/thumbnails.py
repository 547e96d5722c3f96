"""What the run page shows for a tracked example: a thumbnail image or a line of text.

``example_thumbnails`` turns image inputs (N, C, H, W) with C = 1 or 3 into uint8 pixels for
the bundle's ``examples/thumbnail``; ``example_texts`` writes modular-addition examples as
``"a + b ≡ c (mod p)"`` for ``examples/text``. Anything else gets neither (the viewer then shows
the index and the label).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def example_thumbnails(x: torch.Tensor, idx) -> np.ndarray | None:
    """uint8 pixels of the examples ``idx``: (N_e, H, W) for 1-channel images, (N_e, H, W, 3)
    for 3-channel ones; None when ``x`` is not a batch of such images.

    Inputs in [0, 1] (every dataset here) map to 0..255; others are scaled per image from its
    own minimum to its maximum (normalised inputs).
    """
    x = torch.as_tensor(x)
    if not x.is_floating_point() or x.dim() != 4 or x.shape[1] not in (1, 3):
        return None
    sel = x[torch.as_tensor(idx, dtype=torch.int64, device=x.device)].detach().float().cpu()
    if len(sel) and (float(sel.min()) < 0.0 or float(sel.max()) > 1.0):
        lo = sel.amin(dim=(1, 2, 3), keepdim=True)
        span = (sel.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
        sel = (sel - lo) / span
    pixels = (sel.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
    return pixels[:, 0] if pixels.shape[1] == 1 else np.ascontiguousarray(
        pixels.transpose(0, 2, 3, 1))


def example_texts(dataset_name: str, x: torch.Tensor, y: torch.Tensor, idx,
                  modulus: int | None) -> list[str] | None:
    """``"a + b ≡ c (mod p)"`` for each example ``idx`` of modular addition (c its label, as
    trained: a flipped label shows as the flipped one); None for other datasets.

    Args:
        dataset_name: the dataset (``"modular-addition"`` gets texts).
        x: (N, 3) token ids ``[a, b, "="]`` (integer or float); y: (N,) labels.
        idx: the examples' positions.
        modulus: p (default: the "=" token, which is p).
    """
    if dataset_name != "modular-addition":
        return None
    ids = torch.as_tensor(idx, dtype=torch.int64)
    tokens = torch.as_tensor(x).detach().cpu()[ids].round().long()
    labels = torch.as_tensor(y).detach().cpu()[ids].long()
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"modular-addition inputs are (N, 3) token ids, got "
                         f"{tuple(tokens.shape)}")
    p = int(modulus) if modulus is not None else int(tokens[0, -1]) if len(tokens) else 0
    rows: Sequence = zip(tokens[:, 0].tolist(), tokens[:, 1].tolist(), labels.tolist(),
                         strict=True)
    return [f"{a} + {b} ≡ {c} (mod {p})" for a, b, c in rows]
