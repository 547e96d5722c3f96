"""Accessors of the cheaper-LCA modes (a :class:`~lcaviz.bundle.RunBundle` mixin; see
docs/approximations.md and docs/bundle-format.md):

* ``--lca-data`` / ``--lca-data-resample``: what loss the run allocates
  (:attr:`allocated_loss`, e.g. "loss on 5,000 of 55,000 training examples") and, when the
  subset changes every step, each step's own ΔL (:meth:`loss_change`);
* ``--lca-every K``: which iterations were allocated (:meth:`lca_iters`, :meth:`allocated`).
  Per-iteration LCA of the others does not exist: it is stored as NaN (0 help/hurt counts,
  −1 splits) and :meth:`gaps` fills the per-layer series for the reader's accessors;
* ``--full-loss-every K``: the full training loss at θ_0, θ_K, ... (:meth:`full_loss`).

Bundles without these options read exactly as before: every iteration allocated, the loss of
the whole training set, no full-loss series.
"""

from __future__ import annotations

import numpy as np

from lcaviz.bundle.errors import read_guard
from lcaviz.bundle.layout import FULL_LOSS_DATASETS


class _BundleApprox:
    """Methods of :class:`~lcaviz.bundle.RunBundle` (uses ``_f``, ``_attrs``, ``_lock``,
    ``_series``, ``config`` and ``n_iters``)."""

    @property
    def allocated_loss(self) -> str | None:
        """The loss the LCA allocates, in words, for subset runs (``--lca-data``); None for
        runs that allocate the loss of the whole training set (the default)."""
        text = self._attrs.get("allocated_loss") or self.config.get("allocated_loss")
        if not text or str(text).startswith("loss on all "):
            return None
        return str(text)

    @property
    def lca_every(self) -> int:
        """K of ``--lca-every K`` (1: every iteration allocated)."""
        return int(self._attrs.get("lca_every", self.config.get("lca_every", 1) or 1))

    @property
    def is_gapped(self) -> bool:
        """True if some iterations were not allocated (the bundle has ``lca_iters``)."""
        return "lca_iters" in self._f

    def lca_iters(self) -> np.ndarray:
        """The allocated iterations among the T published ones, (T_alloc,) int64 (every
        iteration, ``arange(T)``, for bundles without ``--lca-every``)."""
        T = self.n_iters
        if not self.is_gapped:
            return np.arange(T, dtype=np.int64)
        with self._lock, read_guard(self.path, "reading 'lca_iters'"):
            its = self._dataset("lca_iters")[()].astype(np.int64)
        return its[its < T]

    def allocated(self) -> np.ndarray:
        """(T,) bool: True where iteration t was allocated."""
        mask = np.zeros(self.n_iters, bool)
        mask[self.lca_iters()] = True
        return mask

    def gaps(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """``values`` (T, ...) with the iterations that were not allocated set to ``fill``
        (returned unchanged for bundles without gaps)."""
        if not self.is_gapped:
            return values
        out = np.array(values, np.float64)
        out[~self.allocated()[: len(out)]] = fill
        return out

    def loss_change(self) -> np.ndarray:
        """ΔL of each step, (T,): what the step's LCA allocates. ``loss_change`` where stored
        (resampled subsets: each step's ΔL is on its own subset, so it is not the difference
        of consecutive ``loss/train`` values), else the difference of ``loss/train``; NaN at
        iterations that were not allocated."""
        stored = self._series("loss_change", self.n_iters, optional=True)
        out = (np.asarray(stored, np.float64) if stored is not None
               else np.diff(np.asarray(self.loss_train(), np.float64))[: self.n_iters])
        return self.gaps(out, np.nan)

    def full_loss(self) -> dict | None:
        """The full training loss where ``--full-loss-every`` evaluated it: ``{"iters": (F,)
        int64 (θ_t indices, ≤ T), "loss": (F,), "accuracy": (F,)}``; None without it."""
        if "full_loss_iters" not in self._f:
            return None
        with self._lock, read_guard(self.path, "reading 'full_loss'"):
            arrays = [self._dataset(n)[()] for n in FULL_LOSS_DATASETS]
        n = min(len(a) for a in arrays)
        its = arrays[0][:n].astype(np.int64)
        keep = its <= self.n_iters
        return {"iters": its[keep], "loss": arrays[1][:n][keep].astype(np.float64),
                "accuracy": arrays[2][:n][keep].astype(np.float64)}
