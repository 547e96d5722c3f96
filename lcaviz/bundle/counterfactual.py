"""The causal test in the bundle (``lca-run --counterfactual-every K``, issue 15.3): at
iterations 0, K, 2K, ... the full loss change after applying only the helping, only the
hurting and only the zero-LCA coordinates of the step, each beside the sum of their LCA
(numpy + h5py only; computed by :mod:`compute.lca.counterfactual`).

Datasets (M entries, one per sampled iteration, in ``counterfactual_iters`` order):

* ``counterfactual_iters`` (M,) int64: the iterations t;
* ``counterfactual`` (M, 4, 2) float64: rows :data:`PARTS` (the actual step, then the helping,
  hurting and zero-LCA coordinates alone), columns ``(ΔL of that partial step, Σ LCA of its
  coordinates)``.
"""

from __future__ import annotations

import h5py
import numpy as np

from lcaviz.bundle.h5dataset import make_dataset

PARTS = ("actual", "helping", "hurting", "zero")
NAMES = ("counterfactual_iters", "counterfactual")


def create(f: h5py.File, every: int) -> None:
    """The empty growing datasets of a bundle made with ``--counterfactual-every every``."""
    make_dataset(f, NAMES[0], (0,), np.int64, "iterations with a counterfactual test",
                 maxshape=(None,), chunks=(256,))
    make_dataset(f, NAMES[1], (0, len(PARTS), 2), np.float64,
                 "full loss change of the partial steps (actual, helping, hurting, zero) "
                 "and the sum of their LCA", maxshape=(None, len(PARTS), 2),
                 chunks=(256, len(PARTS), 2))
    f[NAMES[1]].attrs["parts"] = list(PARTS)
    f[NAMES[1]].attrs["columns"] = ["loss_change", "lca_sum"]
    f[NAMES[0]].attrs["every"] = int(every)


def truncate(f: h5py.File, T: int) -> None:
    """Keep the entries of iterations before ``T`` (a resume)."""
    if NAMES[0] in f:
        M = int(np.searchsorted(f[NAMES[0]][()], T, side="left"))
        for name in NAMES:
            f[name].resize(M, axis=0)


def problems(f: h5py.File) -> list[str]:
    """What does not fit: the values' shape, or fewer values than iterations listed."""
    if NAMES[0] not in f:
        return []
    out = []
    if NAMES[1] not in f or f[NAMES[1]].shape[1:] != (len(PARTS), 2):
        out.append(f"{NAMES[1]} is missing or not (M, {len(PARTS)}, 2)")
    elif f[NAMES[1]].shape[0] < f[NAMES[0]].shape[0]:
        out.append(f"{NAMES[0]} has {f[NAMES[0]].shape[0]} entries but {NAMES[1]} only "
                   f"{f[NAMES[1]].shape[0]}")
    return out


class _BundleCounterfactual:
    """Accessors of :class:`~lcaviz.bundle.RunBundle` (a mixin: the reader provides ``_f``
    and ``n_iters``)."""

    @property
    def has_counterfactual(self) -> bool:
        """Whether the run was made with ``--counterfactual-every``."""
        return NAMES[0] in self._f

    def counterfactual(self) -> tuple[np.ndarray, np.ndarray]:
        """``(iterations (M,), values (M, 4, 2))`` of the sampled iterations before
        ``n_iters``; KeyError without the test."""
        if not self.has_counterfactual:
            raise KeyError(f"{self.path}: no counterfactual test (lca-run "
                           "--counterfactual-every K)")
        its = np.asarray(self._f[NAMES[0]][()], np.int64)
        M = int(np.searchsorted(its, self.n_iters, side="left"))
        M = min(M, self._f[NAMES[1]].shape[0])  # a live run: the consistent prefix
        return its[:M], np.asarray(self._f[NAMES[1]][:M], np.float64)
