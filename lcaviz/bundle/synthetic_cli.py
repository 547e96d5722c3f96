"""The command line of :mod:`lcaviz.bundle.synthetic` (benchmarks, sample data)::

    python -m lcaviz.bundle.synthetic OUT.h5 --iters 1000 --params 1000000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from lcaviz.bundle.synthetic import DEFAULT_LAYERS, layers_for_params, write_synthetic_bundle


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lcaviz.bundle.synthetic OUT.h5 --iters N --params P ...``"""
    ap = argparse.ArgumentParser(prog="python -m lcaviz.bundle.synthetic",
                                 description="Write a synthetic LCA run bundle.")
    ap.add_argument("out", type=Path)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--params", type=int, default=None,
                    help="about this many parameters in --layers Linear layers "
                         "(default: MNIST-FC 784-100-50-10)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--stride", default="1", help="row schedule: S or dense:N,S")
    ap.add_argument("--storage", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sync-peaks", type=int, default=0)
    ap.add_argument("--zero-fraction", type=float, default=0.2)
    ap.add_argument("--help-fraction", type=float, default=0.55)
    ap.add_argument("--no-per-class", action="store_true")
    ap.add_argument("--trajectory", action="store_true")
    ap.add_argument("--val", action="store_true")
    ap.add_argument("--status", choices=["complete", "running", "failed"], default="complete")
    ap.add_argument("--examples", type=int, default=0,
                    help="per-example LCA over a planted training set of this many examples")
    ap.add_argument("--tracked-examples", type=int, default=None,
                    help="track only this many of them (a seeded subset)")
    ap.add_argument("--thumbnail", type=int, default=8, help="side of the example images")
    ap.add_argument("--label-noise", type=float, default=0.0)
    args = ap.parse_args(argv)
    layers = DEFAULT_LAYERS if args.params is None else layers_for_params(args.params,
                                                                          args.layers)
    start = time.monotonic()
    write_synthetic_bundle(args.out, n_iters=args.iters, layers=layers, n_classes=args.classes,
                           stride=args.stride, seed=args.seed, storage=args.storage,
                           per_class=not args.no_per_class, save_trajectory=args.trajectory,
                           val_lca=args.val, zero_fraction=args.zero_fraction,
                           help_fraction=args.help_fraction, status=args.status,
                           sync_peaks=args.sync_peaks, progress=True, examples=args.examples,
                           tracked_examples=args.tracked_examples, thumbnail=args.thumbnail,
                           label_noise=args.label_noise)
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB) in {time.monotonic() - start:.1f} s")
    return 0
