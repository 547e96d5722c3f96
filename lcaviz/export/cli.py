"""``lcaviz export tensorboard RUN.h5 LOGDIR`` and ``lcaviz export wandb RUN.h5``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lcaviz.bundle import BundleError
from lcaviz.export.tensorboard import ExportError


def build_parser() -> argparse.ArgumentParser:
    """The ``lcaviz export`` argument parser."""
    ap = argparse.ArgumentParser(prog="lcaviz export", description="Send a run bundle's LCA "
                                 "to TensorBoard or Weights & Biases (no torch needed).")
    sub = ap.add_subparsers(dest="target", required=True)
    tb = sub.add_parser("tensorboard", help="write TensorBoard event files",
                        description="Scalars by iteration (per-layer and per-group LCA and "
                        "cumulative LCA, %% helping, residual, losses), per-layer histograms "
                        "of per-parameter LCA at every stored row, and the config as hparams, "
                        "into LOGDIR/<run name>/. View: tensorboard --logdir LOGDIR")
    tb.add_argument("bundle", type=Path, help="the run bundle (.h5)")
    tb.add_argument("logdir", type=Path, help="TensorBoard log directory (created if needed)")
    wb = sub.add_parser("wandb", help="log a Weights & Biases run (offline by default)",
                        description="The same series as a W&B run, in offline mode unless "
                        "--online: upload later with `wandb sync DIR/wandb/offline-run-*`.")
    wb.add_argument("bundle", type=Path, help="the run bundle (.h5)")
    wb.add_argument("--project", default="lca-explorer",
                    help="W&B project (default: lca-explorer)")
    wb.add_argument("--name", default=None, help="run name (default: the bundle's name)")
    wb.add_argument("--dir", type=Path, default=None, help="where W&B writes (default: .)")
    wb.add_argument("--online", action="store_true", help="send to the W&B server now")
    for p in (tb, wb):
        p.add_argument("--no-histograms", action="store_true",
                       help="scalars and hparams only")
        p.add_argument("--max-histogram-rows", type=int, default=None, metavar="N",
                       help="histograms at N evenly spaced stored rows only")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; one-line errors on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        if args.target == "tensorboard":
            from lcaviz.export.tensorboard import export_tensorboard

            out = export_tensorboard(args.bundle, args.logdir,
                                     histograms=not args.no_histograms,
                                     max_histogram_rows=args.max_histogram_rows)
            print(f"lcaviz: wrote {out} (view: tensorboard --logdir {args.logdir})")
        else:
            from lcaviz.export.wandb import export_wandb

            out = export_wandb(args.bundle, project=args.project, name=args.name,
                               directory=args.dir, mode="online" if args.online else "offline",
                               histograms=not args.no_histograms,
                               max_histogram_rows=args.max_histogram_rows)
            import wandb

            wandb.teardown()  # the service process finishes writing the run file first
            hint = "" if args.online else f" (upload: wandb sync {out})"
            print(f"lcaviz: wrote {out}{hint}")
    except (ExportError, BundleError, OSError) as e:
        print(f"lcaviz export: error: {e}", file=sys.stderr)
        return 2
    return 0
