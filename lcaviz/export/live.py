"""TensorBoard while training: ``LCATracker(..., tensorboard=LOGDIR)``.

:class:`TensorBoardMirror` wraps the run's :class:`~lcaviz.bundle.BundleWriter`: every
iteration record and stored row the writer gets is also written as TensorBoard events, with
the tags, steps and values of ``lcaviz export tensorboard`` of the finished bundle
(:mod:`lcaviz.export.series`), so a run watched live and one exported later read the same
(the tests compare them). Histograms are of the rows as the bundle stores them (float32 or
bfloat16). numpy only: the tracker hands over host arrays.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lcaviz.bundle.schema import from_bfloat16, ranges_index, to_bfloat16
from lcaviz.export.series import HISTOGRAM_BINS, flat_config, histogram_of
from lcaviz.export.tensorboard import ExportError, _tb, _Writer


def open_live(logdir: str | Path, run_name: str) -> Path:
    """Check (before anything is written) that ``logdir/run_name`` holds no events yet.

    Raises:
        ExportError: it does, or the tensorboard package is missing.
    """
    _tb()
    out = Path(logdir) / run_name
    if out.is_dir() and any(out.glob("events.out.tfevents*")):
        raise ExportError(f"{out} already holds TensorBoard events; choose another "
                          "tensorboard= directory or remove them first")
    return out


class TensorBoardMirror:
    """A bundle writer that also writes TensorBoard events (every other call is forwarded).

    Args:
        writer: the run's bundle writer.
        out: the run's event directory (from :func:`open_live`).
        layout: the writer's :class:`~lcaviz.bundle.layout.LayoutInfo`.
        loss_train0, acc_train0, loss_val0, acc_val0: the values at θ_0.
    """

    def __init__(self, writer, out: Path, layout, *, loss_train0: float, acc_train0: float,
                 loss_val0: float | None = None, acc_val0: float | None = None):
        self._writer = writer
        self._name = out.name
        out.mkdir(parents=True, exist_ok=True)
        self._tb = _Writer(out)
        self._layers = list(layout.layer_names)
        self._groups = [name for name, _ in layout.groups or []]
        col_layer = np.repeat(np.asarray(layout.param_layer), np.diff(layout.param_offsets))
        self._row_layer = col_layer[ranges_index(layout.columns())]  # layer of each row column
        self._cum = np.zeros(len(self._layers))
        self._gcum = np.zeros(len(self._groups))
        self._total = 0.0
        self._pct: list[float] = []
        self._t = 0
        self._loss0 = float(loss_train0)
        self._loss = float(loss_train0)
        self._config = flat_config(json.loads(json.dumps(layout.config, default=str)))
        self._pending: dict[int, list[tuple[str, float]]] = {}
        self._scalar("loss/train", loss_train0, 0)
        self._scalar("accuracy/train", acc_train0, 0)
        if loss_val0 is not None:
            self._scalar("loss/val", loss_val0, 0)
            self._scalar("accuracy/val", acc_val0, 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    def _scalar(self, tag: str, value, step: int) -> None:
        """Queue one value; :meth:`_flush` writes each step's values as one event."""
        if value is not None and math.isfinite(float(value)):
            self._pending.setdefault(int(step), []).append((tag, float(value)))

    def _flush(self, upto: int | None = None) -> None:
        """Write the queued steps (up to ``upto``): each step once, in order, so that
        TensorBoard never sees a step go back (it would take it for a restart)."""
        for step in sorted(k for k in self._pending if upto is None or k <= upto):
            self._tb.scalars(step, self._pending.pop(step))

    def append(self, rec) -> None:
        """Append to the bundle, then write iteration t's scalars (and histograms if a row
        window closes here)."""
        self._writer.append(rec)
        t = self._t
        if rec.allocated:
            lca = np.asarray(rec.lca_layer, np.float64)
            self._cum += lca
            for li, name in enumerate(self._layers):
                self._scalar(f"lca/layer/{name}", lca[li], t)
                self._scalar(f"lca_cumulative/layer/{name}", self._cum[li], t)
            self._total += float(lca.sum())
            self._scalar("lca/total", lca.sum(), t)
            self._scalar("lca_cumulative/total", self._total, t)
            if rec.lca_group is not None:
                g = np.asarray(rec.lca_group, np.float64)
                self._gcum += g
                for gi, name in enumerate(self._groups):
                    self._scalar(f"lca/group/{name}", g[gi], t)
                    self._scalar(f"lca_cumulative/group/{name}", self._gcum[gi], t)
            helped = np.asarray(rec.help_count, np.float64)
            nonzero = helped + np.asarray(rec.hurt_count, np.float64)
            for li, name in enumerate(self._layers):
                if nonzero[li] > 0:
                    self._scalar(f"helping_pct/layer/{name}", 100 * helped[li] / nonzero[li], t)
            if nonzero.sum() > 0:
                self._pct.append(100 * helped.sum() / nonzero.sum())
                self._scalar("helping_pct/all", self._pct[-1], t)
        self._scalar("lca/residual", rec.residual, t)
        self._scalar("loss/minibatch", rec.loss_minibatch, t)
        self._loss = float(rec.loss_train)
        self._scalar("loss/train", rec.loss_train, t + 1)
        self._scalar("accuracy/train", rec.acc_train, t + 1)
        if rec.loss_val is not None:
            self._scalar("loss/val", rec.loss_val, t + 1)
            self._scalar("accuracy/val", rec.acc_val, t + 1)
        self._t += 1
        self._flush(upto=t)  # step t is complete; t + 1's losses wait for its LCA
        if rec.lca_row is not None:
            self._histograms(rec.lca_row)

    def append_lca_row(self, row, name: str = "lca") -> None:
        """A row appended outside ``append`` (the last, partial window at close)."""
        self._writer.append_lca_row(row, name)
        if name == "lca":
            self._histograms(row)

    def _histograms(self, row) -> None:
        stored = np.asarray(row).astype(np.float32)
        if getattr(self._writer, "bfloat16", False):
            stored = from_bfloat16(to_bfloat16(stored))
        for li, name in enumerate(self._layers):
            values = stored[self._row_layer == li]
            if values.size:
                self._tb.histogram(histogram_of(f"lca_param/{name}", self._t - 1, values,
                                                HISTOGRAM_BINS))

    def close(self, *args, **kwargs):
        """Close the bundle, then write the hparams and run-level metrics and close the
        events."""
        try:
            return self._writer.close(*args, **kwargs)
        finally:
            metrics = {"hparams/final_loss_train": self._loss,
                       "hparams/loss_change": self._loss - self._loss0,
                       "hparams/lca_total": float(self._cum.sum()),
                       "hparams/pct_helping": float(np.mean(self._pct)) if self._pct
                       else math.nan}
            hp = self._tb.hparams
            self._tb.summary(hp.hparams_config_pb(
                hparams=[hp.HParam(k) for k in self._config],
                metrics=[hp.Metric(k) for k in metrics]))
            self._tb.summary(hp.hparams_pb(self._config, trial_id=self._name))
            for tag, value in metrics.items():
                self._scalar(tag, value, max(self._t - 1, 0))
            self._flush()
            self._tb.close()
