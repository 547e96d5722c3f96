"""``lcaviz export tensorboard RUN.h5 LOGDIR``: a run bundle as TensorBoard event files.

Written with TensorBoard's own event writer and protos (``pip install
'lca-explorer[tensorboard]'``): the same writer ``torch.utils.tensorboard`` uses, without
importing torch or TensorFlow (tensorboardX was not chosen because its writer imports torch
whenever torch is installed). The run goes to ``LOGDIR/<run name>/`` so that several exported
runs sit side by side in one TensorBoard (``tensorboard --logdir LOGDIR``): scalars by
iteration, ``lca_param/<layer>`` histograms at every stored row, and the config in the HParams
tab with the run-level metrics of :func:`lcaviz.export.series.run_metrics`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from lcaviz.bundle import RunBundle
from lcaviz.export.series import (
    Histogram,
    flat_config,
    layer_histograms,
    run_metrics,
    scalar_series,
)

INSTALL_HINT = ("TensorBoard export needs the tensorboard package: "
                "pip install 'lca-explorer[tensorboard]' (or pip install tensorboard)")


class ExportError(RuntimeError):
    """An export that cannot be made (missing package, target already there)."""


def _tb():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as e:
        raise ExportError(INSTALL_HINT) from e
    return event_pb2, summary_pb2, summary_v2, EventFileWriter


class _Writer:
    """Events into one run directory (scalars, raw histograms, whole summaries)."""

    def __init__(self, logdir: Path):
        self.event_pb2, self.summary_pb2, self.hparams, writer = _tb()
        self._w = writer(str(logdir), max_queue_size=1000, flush_secs=30)
        self._wall = time.time()

    def summary(self, summary, step: int = 0) -> None:
        self._w.add_event(self.event_pb2.Event(wall_time=self._wall, step=int(step),
                                               summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars(step, [(tag, value)])

    def scalars(self, step: int, values: list[tuple[str, float]]) -> None:
        """Several tags at one step in one event (one event per step, not per value, keeps
        a long run's export fast)."""
        S = self.summary_pb2.Summary
        self.summary(S(value=[S.Value(tag=tag, simple_value=float(v)) for tag, v in values]),
                     step)

    def histogram(self, h: Histogram) -> None:
        S = self.summary_pb2.Summary
        proto = self.summary_pb2.HistogramProto(
            min=h.lo, max=h.hi, num=h.num, sum=h.total, sum_squares=h.sum_squares,
            bucket_limit=h.edges[1:].tolist(), bucket=h.counts.astype(float).tolist())
        self.summary(S(value=[S.Value(tag=h.tag, histo=proto)]), h.step)

    def close(self) -> None:
        self._w.close()


def export_tensorboard(bundle_path: str | Path, logdir: str | Path, *,
                       histograms: bool = True, max_histogram_rows: int | None = None,
                       run_name: str | None = None) -> Path:
    """Write the bundle at ``bundle_path`` as event files under ``logdir/<run name>``.

    Args:
        bundle_path: the ``.h5`` run bundle.
        logdir: TensorBoard's log directory (created if needed).
        histograms: write the per-layer histograms of per-parameter LCA.
        max_histogram_rows: at most this many rows get histograms (evenly spaced).
        run_name: the sub-directory (default: the bundle's file name without ``.h5``).

    Returns:
        The directory written.

    Raises:
        ExportError: tensorboard is missing, or the run's directory already holds events
            (nothing is overwritten).
        lcaviz.bundle.BundleError: the bundle cannot be read.
    """
    _tb()  # fail before touching anything when the package is missing
    bundle_path = Path(bundle_path)
    out = Path(logdir) / (run_name or bundle_path.stem)
    if out.is_dir() and any(out.glob("events.out.tfevents*")):
        raise ExportError(f"{out} already holds TensorBoard events; export into another "
                          "LOGDIR or remove them first (nothing was written)")
    with RunBundle.open(bundle_path) as b:
        out.mkdir(parents=True, exist_ok=True)
        w = _Writer(out)
        try:
            by_step: dict[int, list[tuple[str, float]]] = defaultdict(list)
            for s in scalar_series(b):
                for step, value in zip(s.steps.tolist(), s.values.tolist(), strict=True):
                    by_step[step].append((s.tag, value))
            for step in sorted(by_step):
                w.scalars(step, by_step[step])
            if histograms:
                for h in layer_histograms(b, max_histogram_rows):
                    w.histogram(h)
            metrics = run_metrics(b)
            hp = w.hparams
            config = flat_config(b.config)
            w.summary(hp.hparams_config_pb(hparams=[hp.HParam(k) for k in config],
                                           metrics=[hp.Metric(k) for k in metrics]))
            w.summary(hp.hparams_pb(config, trial_id=bundle_path.stem))
            for tag, value in metrics.items():
                w.scalar(tag, value, max(b.n_iters - 1, 0))
        finally:
            w.close()
    return out
