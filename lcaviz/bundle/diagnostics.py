"""Accessors of a bundle's quadrature diagnostics and oscillation counters (a
:class:`~lcaviz.bundle.RunBundle` mixin). Every one returns None for a bundle made without
the option (older bundles included), never an error:

* ``--lca-error-every K``: ``lca_error_iters``, ``lca_error`` and the ``lca_error_stats`` group
  (error of each rule against 4× the Simpson intervals at iterations 0, K, 2K, ...);
* adaptive runs: ``hit_max_halvings`` and the conservation attributes written at close;
* the oscillation counters ``param_moves`` ... and ``layer_oscillation``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from lcaviz.bundle.errors import CorruptBundleError, read_guard
from lcaviz.bundle.layout import (
    ERROR_LAYER_FIELDS,
    ERROR_RULE_FIELDS,
    ERROR_RULES,
    ERROR_STATS,
    M_DATASETS,
    OSC_COUNTERS,
    OSC_LAYER_COLUMNS,
)

CLOSING_ATTRS = ("lca_cum_residual", "lca_cum_abs_residual", "lca_cum_loss_change",
                 "lca_cum_abs_loss_change", "lca_cum_error", "lca_cum_abs_error")


class _BundleDiagnostics:
    """Methods of :class:`~lcaviz.bundle.RunBundle` (uses its ``_f``, ``_lock``, ``_series``,
    ``_dataset``, ``_read_stored``, ``stored_columns`` and ``n_iters``)."""

    # -- per-parameter error estimates (--lca-error-every) -----------------------------------
    @property
    def has_lca_error(self) -> bool:
        return "lca_error_iters" in self._f

    def _n_error(self) -> int:
        """M: error iterations within the T published iterations (all their data written)."""
        with self._lock, read_guard(self.path, "reading 'lca_error_iters'"):
            iters = self._dataset("lca_error_iters")[()]
            lengths = [self._dataset(n).shape[0] for n in M_DATASETS]
        return min(int(np.searchsorted(iters, self.n_iters, side="left")), *lengths)

    def lca_error_iters(self) -> np.ndarray | None:
        """Iterations with an error estimate, (M,) int64, or None without ``--lca-error-every``."""
        if not self.has_lca_error:
            return None
        return self._series("lca_error_iters", self._n_error()).astype(np.int64)

    def lca_error(self, m0: int | None = 0, m1: int | None = None, cols=None
                  ) -> np.ndarray | None:
        """|A_stored − A_ref| at error iterations ``m0:m1`` (indices into
        :meth:`lca_error_iters`), (m, ncols) float32; ``cols`` selects over the P parameters
        like :meth:`rows` (only columns with per-parameter rows are stored)."""
        if not self.has_lca_error:
            return None
        width = self._dataset("lca_error").shape[1]
        if width != self.n_row_cols:
            raise CorruptBundleError(f"{self.path}: lca_error has {width} columns, expected "
                                     f"{self.n_row_cols} (the columns of lca_columns)")
        a, b, _ = slice(m0, m1).indices(self._n_error())
        return self._read_stored("lca_error", a, max(a, b), self.stored_columns(cols),
                                 self.n_row_cols)

    def lca_error_stats(self) -> dict | None:
        """The per-layer error summaries, cut to M, or None without ``--lca-error-every``.

        Returns:
            ``{"rules": [first_order, trapezoid, rk4, stored], "every": K, "factor": 4,
            "iters": (M,), "intervals": (M,), "ref_residual": (M,), "ref_layer",
            "ref_abs_layer", "nonzero": (M, L) each, "rule_sum", "abs_error", "median_rel",
            "flips": (M, 4, L) each}`` (see docs/bundle-format.md).
        """
        if not self.has_lca_error:
            return None
        M = self._n_error()
        with self._lock, read_guard(self.path, f"reading {ERROR_STATS!r}"):
            g = self._f[ERROR_STATS]
            rules = json.loads(g.attrs.get("rules", json.dumps(ERROR_RULES)))
            out = {"rules": list(rules), "every": int(g.attrs.get("every", 0)),
                   "factor": int(g.attrs.get("factor", 4))}
        out["iters"] = self.lca_error_iters()
        for name in ("intervals", "ref_residual", *ERROR_LAYER_FIELDS, *ERROR_RULE_FIELDS):
            out[name] = self._series(f"{ERROR_STATS}/{name}", M)
        L, R = self.n_layers, len(rules)
        for name in ERROR_LAYER_FIELDS:
            if out[name].shape != (M, L):
                raise CorruptBundleError(f"{self.path}: {ERROR_STATS}/{name} has shape "
                                         f"{out[name].shape}, expected ({M}, {L})")
        for name in ERROR_RULE_FIELDS:
            if out[name].shape != (M, R, L):
                raise CorruptBundleError(f"{self.path}: {ERROR_STATS}/{name} has shape "
                                         f"{out[name].shape}, expected ({M}, {R}, {L})")
        return out

    # -- adaptive refinement and conservation -------------------------------------------------
    def hit_max_halvings(self) -> np.ndarray | None:
        """(T,) int8: 1 where an adaptive step used 2**max_halvings intervals and still missed
        the tolerance; None for bundles without the flags (non-adaptive or older runs)."""
        out = self._series("hit_max_halvings", self.n_iters, optional=True)
        return None if out is None else out.astype(np.int8)

    def closing_error(self) -> dict | None:
        """The conservation totals written when the run completed (``lca_cum_*``, and
        ``lca_hit_max_halvings`` for adaptive runs), or None (older, running or failed runs)."""
        a = self._attrs
        if "lca_cum_error" not in a:
            return None
        out = {k: float(a[k]) for k in CLOSING_ATTRS if k in a}
        if "lca_hit_max_halvings" in a:
            out["lca_hit_max_halvings"] = int(a["lca_hit_max_halvings"])
        return out

    # -- oscillation counters -----------------------------------------------------------------
    def oscillation_counters(self) -> dict[str, np.ndarray] | None:
        """The per-parameter counters ``{param_moves, param_move_changes, param_grad_signs,
        param_grad_changes}``, (P,) int64 each, or None for bundles without them."""
        if "layer_oscillation" not in self._f:
            return None
        out = {name: self._series(name, self.n_params).astype(np.int64)
               for name in OSC_COUNTERS}
        bad = [name for name, v in out.items() if v.shape != (self.n_params,)]
        if bad:
            raise CorruptBundleError(f"{self.path}: {', '.join(bad)} should have "
                                     f"{self.n_params} entries (P)")
        return out

    def oscillation_iters(self) -> int | None:
        """Iterations the oscillation counters cover: ``T`` when they were last written (at
        each checkpoint and at completion, so a live run's counters may lag behind ``T``)."""
        out = self._series("oscillation_iters", 1, optional=True)
        return None if out is None or not len(out) else int(out[0])

    def layer_oscillation(self) -> pd.DataFrame | None:
        """Per-layer sums of the oscillation counters: one row per layer with ``layer`` (name)
        and the columns moves, move_changes, moving, grad_signs, grad_changes, grad_nonzero;
        None for bundles without them."""
        arr = self._series("layer_oscillation", self.n_layers, optional=True)
        if arr is None:
            return None
        if arr.shape != (self.n_layers, len(OSC_LAYER_COLUMNS)):
            raise CorruptBundleError(f"{self.path}: layer_oscillation has shape {arr.shape}, "
                                     f"expected ({self.n_layers}, {len(OSC_LAYER_COLUMNS)})")
        df = pd.DataFrame(arr.astype(np.int64), columns=list(OSC_LAYER_COLUMNS))
        df.insert(0, "layer", self.layer_names)
        return df
