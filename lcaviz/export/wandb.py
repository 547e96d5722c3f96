"""``lcaviz export wandb RUN.h5``: a run bundle as a Weights & Biases run.

Offline by default (``mode="offline"``: the run is written under ``DIR/wandb/offline-run-*``
and nothing is sent; ``wandb sync`` uploads it later). ``pip install 'lca-explorer[wandb]'``.
The same series as the TensorBoard export (:mod:`lcaviz.export.series`): scalars by iteration
(W&B's step is the iteration), ``lca_param/<layer>`` histograms at the stored rows, the
flattened config as the run's config and the run-level metrics in its summary.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from lcaviz.bundle import RunBundle
from lcaviz.export.series import flat_config, layer_histograms, run_metrics, scalar_series
from lcaviz.export.tensorboard import ExportError

INSTALL_HINT = ("W&B export needs wandb: pip install 'lca-explorer[wandb]' "
                "(or pip install wandb)")
MODES = ("offline", "online")


def _wandb():
    try:
        import wandb
    except ImportError as e:
        raise ExportError(INSTALL_HINT) from e
    return wandb


def export_wandb(bundle_path: str | Path, *, project: str = "lca-explorer",
                 name: str | None = None, directory: str | Path | None = None,
                 mode: str = "offline", histograms: bool = True,
                 max_histogram_rows: int | None = None) -> Path:
    """Log the bundle at ``bundle_path`` as one W&B run.

    Args:
        bundle_path: the ``.h5`` run bundle.
        project: the W&B project.
        name: the run's name (default: the bundle's file name without ``.h5``).
        directory: where W&B writes its files (default: the current directory).
        mode: ``"offline"`` (default: nothing leaves this machine) or ``"online"``.
        histograms: log per-layer histograms of per-parameter LCA at the stored rows.
        max_histogram_rows: at most this many rows get histograms (evenly spaced).

    Returns:
        The W&B run's directory (``.../wandb/offline-run-...`` in offline mode). W&B's service
        process may still be writing its run file when this returns; it is complete once
        ``wandb.teardown()`` returns (the command line calls it; a notebook need not).

    Raises:
        ExportError: wandb is missing or ``mode`` is unknown.
        lcaviz.bundle.BundleError: the bundle cannot be read.
    """
    if mode not in MODES:
        raise ExportError(f"mode={mode!r}: use one of {', '.join(MODES)}")
    wandb = _wandb()
    bundle_path = Path(bundle_path)
    with RunBundle.open(bundle_path) as b:
        by_step: dict[int, dict] = defaultdict(dict)
        for s in scalar_series(b):
            for step, value in zip(s.steps.tolist(), s.values.tolist(), strict=True):
                by_step[step][s.tag] = value
        if histograms:
            for h in layer_histograms(b, max_histogram_rows):
                by_step[h.step][h.tag] = wandb.Histogram(np_histogram=(h.counts.tolist(),
                                                                       h.edges.tolist()))
        metrics = run_metrics(b)
        config = flat_config(b.config)
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
    env = {"WANDB_SILENT": "true", **({"WANDB_MODE": "offline"} if mode == "offline" else {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run = wandb.init(project=project, name=name or bundle_path.stem, config=config,
                         mode=mode, dir=None if directory is None else str(directory),
                         reinit="create_new")
        try:
            for step in sorted(by_step):
                run.log(by_step[step], step=step)
            run.summary.update(metrics)
            run_dir = Path(run.dir).parent
        finally:
            run.finish()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return run_dir
