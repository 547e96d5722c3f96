"""The public notebook API: ``run = lcaviz.open("runs/x.h5")`` (docs/notebook.md).

A :class:`Run` wraps one :class:`~lcaviz.bundle.RunBundle` and answers with pandas DataFrames
(named index and columns), numpy arrays in the parameters' own shapes and
``plotly.graph_objects.Figure`` objects drawn by the same functions the dashboard uses
(:mod:`lcaviz.api_figures`). Nothing here imports torch.

Index conventions: ``iteration`` t is the step θ_t → θ_{t+1}; per-iteration LCA tables have T
rows (t = 0 … T − 1), the loss table T + 1 (the losses at θ_0 … θ_T).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lcaviz.app.queries import MODES, rows_for
from lcaviz.bundle import RunBundle

__all__ = ["NotInBundleError", "Run", "open_run"]

NO_EXAMPLES = ("this bundle has no per-example values (lca_example): the run was made "
               "without lca-run --per-example / LCATracker(per_example=...)")


class NotInBundleError(LookupError):
    """The bundle does not hold what was asked for (per-class LCA, groups, examples ...)."""


class Run:
    """One run bundle opened for analysis in Python (also a context manager).

    Args:
        path: the ``.h5`` run bundle.

    Raises:
        lcaviz.bundle.BundleError: the file is missing or not a readable bundle.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.bundle = RunBundle.open(self.path)
        self._stamp = _file_stamp(self.path)

    # -- housekeeping -------------------------------------------------------------------------
    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        b = self.bundle
        return (f"<lcaviz.Run {self.name!r}: {b.status}, {b.n_iters:,} iterations, "
                f"{b.n_params:,} parameters, {b.n_layers} layers, {b.n_rows} rows>")

    @property
    def name(self) -> str:
        """The file name without ``.h5``."""
        return self.path.stem

    @property
    def config(self) -> dict:
        """The run's configuration (a copy of the bundle's ``config`` attribute)."""
        return dict(self.bundle.config)

    @property
    def status(self) -> str:
        """``running``, ``complete``, ``failed`` ... as the writer last said."""
        return self.bundle.status

    @property
    def layer_names(self) -> list[str]:
        return list(self.bundle.layer_names)

    @property
    def n_iters(self) -> int:
        return int(self.bundle.n_iters)

    def close(self) -> None:
        """Close the bundle file (idempotent)."""
        self.bundle.close()

    def refresh(self) -> Run:
        """Re-read the bundle (a live run has grown); returns ``self`` for chaining."""
        self.bundle.refresh()
        self._stamp = _file_stamp(self.path)
        return self

    # -- tables -------------------------------------------------------------------------------
    def _iteration_index(self, n: int | None = None) -> pd.RangeIndex:
        return pd.RangeIndex(self.n_iters if n is None else n, name="iteration")

    def layers(self, *, cumulative: bool = False, per_param: bool = False) -> pd.DataFrame:
        """LCA per iteration (rows) and layer (columns), from ``lca_layer`` (exact).

        Args:
            cumulative: running totals after iterations 0..t instead of each iteration's LCA.
            per_param: divide by the layer's number of parameters.

        Returns:
            (T, L) DataFrame, index ``iteration``, columns ``layer``. Iterations a
            ``--lca-every`` run did not allocate are NaN (cumulative: they add nothing).
        """
        b = self.bundle
        x = np.cumsum(b.lca_layer(), axis=0) if cumulative else b.lca_layer(gaps=np.nan)
        return self._per_part(x, b.layer_names, b.layer_sizes, "layer", per_param)

    def groups(self, *, cumulative: bool = False, per_param: bool = False) -> pd.DataFrame:
        """LCA per iteration and named parameter group (a transformer's heads), like
        :meth:`layers`; raises :class:`NotInBundleError` for a run without groups."""
        b = self.bundle
        if not b.has_groups or b.lca_group() is None:
            raise NotInBundleError(f"{self.name}: this bundle has no parameter groups")
        x = np.cumsum(b.lca_group(), axis=0) if cumulative else b.lca_group(gaps=np.nan)
        return self._per_part(x, b.group_names, b.group_sizes, "group", per_param)

    def _per_part(self, x, names, sizes, what: str, per_param: bool) -> pd.DataFrame:
        x = np.asarray(x, np.float64)
        if per_param:
            x = x / np.maximum(np.asarray(sizes, np.float64), 1)
        return pd.DataFrame(x, index=self._iteration_index(len(x)),
                            columns=pd.Index(list(names), name=what))

    def classes(self) -> pd.DataFrame:
        """Per-class LCA in long format: columns ``iteration, class, layer, lca`` (T·C·L rows,
        from ``lca_class_layer``; each (iteration, layer) sums over classes to
        :meth:`layers`)."""
        b = self.bundle
        x = b.lca_class_layer(gaps=np.nan)
        if x is None:
            raise NotInBundleError(f"{self.name}: this bundle has no per-class LCA "
                                   "(made without --per-class)")
        T, C, L = x.shape
        return pd.DataFrame({
            "iteration": np.repeat(np.arange(T), C * L),
            "class": np.tile(np.repeat(np.asarray(b.class_names, object), L), T),
            "layer": np.tile(np.asarray(b.layer_names, object), T * C),
            "lca": np.asarray(x, np.float64).ravel(),
        })

    def helping(self, *, by: str = "layer") -> pd.DataFrame:
        """% of parameters helping (LCA < 0) among those with nonzero LCA, per iteration.

        Args:
            by: ``"layer"`` (T × L, from ``help_count`` / ``hurt_count``) or ``"run"``: the
                whole network's counts and percentages (:func:`lcaviz.analysis.help_series`).

        Returns:
            DataFrame indexed by ``iteration``; NaN where nothing was nonzero or allocated.
        """
        b = self.bundle
        if by == "run":
            from lcaviz.analysis.helping import help_series

            return help_series(b).set_index("iteration")
        if by != "layer":
            raise ValueError(f"by={by!r}: use 'layer' or 'run'")
        helped = b.help_count().astype(np.float64)
        nonzero = helped + b.hurt_count()
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = np.where(nonzero > 0, 100 * helped / np.maximum(nonzero, 1), np.nan)
        pct[~b.allocated()[: len(pct)]] = np.nan
        return pd.DataFrame(pct, index=self._iteration_index(len(pct)),
                            columns=pd.Index(b.layer_names, name="layer"))

    def loss(self) -> pd.DataFrame:
        """The losses at θ_0 … θ_T (T + 1 rows, index ``iteration``).

        Columns: ``train`` (the loss the LCA allocates: the full training set unless
        ``--lca-data``), ``minibatch`` (the step's minibatch at θ_t), ``residual`` (ΔL − ΣLCA
        of step t → t + 1), ``accuracy_train``; ``val`` / ``accuracy_val`` with
        ``--val-lca``; ``full`` where ``--full-loss-every`` evaluated the full training loss.
        The last row's per-step columns are NaN (no step follows θ_T).
        """
        b = self.bundle
        T = self.n_iters
        cols: dict[str, np.ndarray] = {"train": b.loss_train(),
                                       "minibatch": b.loss_minibatch(),
                                       "residual": b.residual(),
                                       "accuracy_train": b.accuracy_train()}
        if (val := b.loss_val()) is not None:
            cols["val"], cols["accuracy_val"] = val, b.accuracy_val()
        if (full := b.full_loss()) is not None:
            x = np.full(T + 1, np.nan)
            x[full["iters"]] = full["loss"]
            cols["full"] = x
        out = {k: _padded(v, T + 1) for k, v in cols.items()}
        return pd.DataFrame(out, index=self._iteration_index(T + 1))

    def examples(self, *, cumulative: bool = True, split: str = "train",
                 by: str = "layer") -> pd.DataFrame:
        """Per-example LCA, where the bundle has it (``lca_example`` and ``examples/index``).

        Args:
            cumulative: totals over training per example (``lca_example_cumsum`` or the sum
                of the rows) instead of one value per stored row.
            split: ``"train"`` or ``"val"`` (the validation examples, ``lca_val_example``).
            by: ``"layer"`` or ``"group"`` (columns: the split groups, e.g. heads).

        Returns:
            cumulative: index ``example`` (the index in its split), columns ``layer`` (or
            ``group``); otherwise index (``row``, ``example``) with the row's first iteration
            in column ``iteration``.

        Raises:
            NotInBundleError: the bundle has no per-example values.
            ValueError: it has none of that split / by.
        """
        b = self.bundle
        if not b.has_examples:
            raise NotInBundleError(f"{self.name}: {NO_EXAMPLES}")
        kw = {"split": split, "by": by}
        index = b.example_index(split=split) if b.has_example_set(split, by) else None
        x = b.example_cumsum(**kw) if cumulative else b.example_lca_rows(**kw)
        names = self.layer_names if by == "layer" else b.example_group_names
        cols = pd.Index(names, name="layer" if by == "layer" else "group")
        if cumulative:
            return pd.DataFrame(x, columns=cols, index=pd.Index(index, name="example"))
        R, N = x.shape[:2]  # (R, N_e, L) float64, bfloat16 rows decoded
        mi = pd.MultiIndex.from_product([range(R), index], names=["row", "example"])
        df = pd.DataFrame(x.reshape(R * N, -1), index=mi, columns=cols)
        df.insert(0, "iteration", np.repeat(self.bundle.row_windows[:R, 0], N))
        return df

    # -- arrays -------------------------------------------------------------------------------
    def row_of(self, iteration: int) -> int:
        """The stored per-parameter row whose window holds ``iteration``."""
        T = self.n_iters
        if not 0 <= int(iteration) < max(T, 1):
            raise IndexError(f"iteration {iteration} out of range: the run has {T} (0…{T - 1})")
        if self.bundle.n_rows == 0:
            raise NotInBundleError(f"{self.name}: no per-parameter rows written yet")
        return self.bundle.row_of_iteration(int(iteration))

    def frame(self, layer: int | str, iteration: int, mode: str = "row",
              window: int = 10) -> np.ndarray | dict[str, np.ndarray]:
        """Per-parameter LCA of one layer (or tensor) at one moment, in the parameters' shape.

        Args:
            layer: a layer (name or index) or a parameter tensor's name (``"fc1.weight"``).
            iteration: any iteration; the frame is the stored row whose window holds it.
            mode: ``"row"`` (that row), ``"cumulative"`` (rows 0 … it: total LCA so far) or
                ``"window"`` (the last ``window`` rows up to it), as on the dashboard.
            window: rows summed in ``"window"`` mode.

        Returns:
            For a tensor, or a layer of one tensor, an array of the tensor's shape; for a
            layer of several tensors (weight and bias), ``{tensor name: array}``.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        b = self.bundle
        tensors = b.params
        if isinstance(layer, str) and layer in set(tensors["name"]):
            tensors = tensors[tensors["name"] == layer]
            cols = b.tensor_columns(layer)
        else:
            li = b.layer_index(layer)
            tensors = tensors[tensors["layer"] == li]
            cols = b.layer_columns(li)
        r0, r1 = rows_for(b, self.row_of(iteration), mode, window)
        values = (b.row(r0, cols) if r1 - r0 == 1 else
                  b.cumulative(r1 - 1, cols) if r0 == 0 else b.window_sum(r0, r1, cols))
        out, start = {}, int(tensors["offset"].min())
        for t in tensors.itertuples(index=False):
            a = int(t.offset) - start
            out[str(t.name)] = np.asarray(values[a:a + int(t.size)]).reshape(t.shape)
        return next(iter(out.values())) if len(out) == 1 else out

    # -- figures ------------------------------------------------------------------------------
    def figure(self, name: str, **options: Any) -> go.Figure:
        """One of the dashboard's figures of this run (:data:`lcaviz.api_figures.FIGURES`).

        Examples: ``run.figure("heatmap", layer="fc1", iteration=120)``,
        ``run.figure("curves", cumulative=True)``, ``run.figure("synchrony", k=20)``.
        """
        from lcaviz.api_figures import run_figure

        return run_figure(self, name, **options)

    def synchrony(self, *, k: int = 20, shift: int = 2, resamples: int = 1000) -> dict | None:
        """The random-shift test of synchronised learning (paper Fig. 6) as a dict
        (:func:`lcaviz.analysis.synchrony.synchrony`): ``p_value``, ``actual_total``, peaks."""
        from lcaviz.analysis.synchrony import synchrony

        return synchrony(self.bundle, k=k, max_shift=shift, n_resamples=resamples)


def open_run(path: str | Path) -> Run:
    """Open a run bundle for analysis (``lcaviz.open``)."""
    return Run(path)


def _padded(x: np.ndarray | None, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if x is not None:
        x = np.asarray(x, np.float64)[:n]
        out[: len(x)] = x
    return out


def _file_stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size
