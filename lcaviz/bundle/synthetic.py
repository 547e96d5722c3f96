"""Realistic fake LCA run bundles, for tests, the dashboard and benchmarks (numpy + h5py only).

The run is generated one iteration at a time and written through :class:`BundleWriter`, so a
bundle with P = 1,000,000 parameters and T = 1000 iterations never holds a (T, P) array.

What is planted (and recorded under ``config["synthetic"]`` so tests can check it):

* a fixed set of dead parameters (``zero_fraction`` of all) whose LCA is exactly 0 at every
  iteration, like first-layer MNIST weights on always-off pixels;
* every other parameter helps (LCA < 0) with probability ``help_fraction`` (a float, or one per
  layer so that a layer can hurt overall) and has a Weibull(k, 1) magnitude (k = 0.6: heavy
  tails) times a per-iteration scale that decays like a learning curve;
* ``loss/train[t+1] = loss/train[t] + Σ_i A[t, i] + residual[t]`` with a small residual;
* a per-class split of each layer's LCA that sums to ``lca_layer`` (the last class takes the
  remainder), with ``sync_peaks`` planted synchronous learning moments per class: at those
  iterations every layer of the class has a strong negative spike (compensated by the other
  classes, so ``lca_layer`` is untouched);
* optionally a trajectory whose moves flip direction with probability ``flip_prob``;
* optionally per-example LCA (``examples=N``): N training examples, all or ``tracked_examples``
  of them tracked, with thumbnails or texts and planted label noise
  (:mod:`lcaviz.bundle.synthetic_examples`; ``Σ_n E = lca_layer`` when all are tracked),
  with ``val_examples=N_v`` also of the validation loss, and with ``heads=H`` named groups
  (``lca_group``) and per-example values per split group.

Command line (benchmarks)::

    python -m lcaviz.bundle.synthetic OUT.h5 --iters 1000 --params 1000000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lcaviz.bundle.synthetic_run import DEFAULT_LAYERS, SyntheticRun  # noqa: F401 - public


def write_synthetic_bundle(path: str | Path, *, n_iters: int = 200,
                           layers: Sequence = DEFAULT_LAYERS, n_classes: int = 10,
                           stride: int | str = 1, seed: int = 0, per_class: bool = True,
                           lca_layers: Sequence[str] | None = None, storage: str = "float32",
                           compression: str = "none",
                           save_trajectory: bool = False, val_lca: bool = False,
                           zero_fraction: float = 0.2,
                           help_fraction: float | Sequence[float] = 0.55,
                           status: str = "complete", sync_peaks: int = 0,
                           weibull_k: float = 0.6, flip_prob: float = 0.15,
                           method: str = "rk4", dtype=np.float32, flush_seconds: float = 2.0,
                           counters_every: int = 100, progress: bool = False,
                           examples: int = 0, tracked_examples: int | None = None,
                           thumbnail: int = 8, example_text: bool = False,
                           label_noise: float = 0.0, val_examples: int = 0,
                           heads: int = 0) -> Path:
    """Write a planted fake run to ``path`` through :class:`BundleWriter` and return the path.

    See :class:`SyntheticRun` for the arguments. ``status`` is ``"complete"`` (the final partial
    row window is appended), ``"running"`` (as if the writer were
    still going: R = T // S) or ``"failed"``. Memory is O(P), never O(T·P).
    """
    run = SyntheticRun(layers=layers, n_iters=n_iters, n_classes=n_classes, stride=stride,
                       seed=seed, lca_layers=lca_layers, storage=storage,
                       compression=compression,
                       per_class=per_class, save_trajectory=save_trajectory,
                       val_lca=val_lca, zero_fraction=zero_fraction,
                       help_fraction=help_fraction, weibull_k=weibull_k,
                       sync_peaks=sync_peaks, flip_prob=flip_prob, method=method, dtype=dtype,
                       examples=examples, tracked_examples=tracked_examples,
                       thumbnail=thumbnail, example_text=example_text, label_noise=label_noise,
                       val_examples=val_examples, heads=heads)
    path = Path(path)
    w = run.create_writer(path, flush_seconds=flush_seconds)
    start = time.monotonic()
    try:
        for t, rec in enumerate(run.records()):
            w.append(rec)
            if (t + 1) % counters_every == 0:
                w.set_param_counters(run.help_iters, run.nonzero_iters)
            if progress and (t + 1) % 50 == 0:
                print(f"  {t + 1}/{n_iters} iterations, {time.monotonic() - start:.1f} s",
                      flush=True)
        if status != "running" and run.partial_row is not None:
            w.append_lca_row(run.partial_row)
            if run.partial_val_row is not None:
                w.append_lca_row(run.partial_val_row, "lca_val")
        w.set_param_counters(run.help_iters, run.nonzero_iters)
    except BaseException:
        w.close("failed", "generator interrupted")
        raise
    reason = "synthetic failure" if status == "failed" else ""
    w.close(status, reason)
    return path


def layers_for_params(n_params: int, n_layers: int = 4, width: int = 1000) -> tuple:
    """Linear layers ``(m, width)`` (+ bias) totalling about ``n_params`` parameters."""
    m = max(1, round(n_params / n_layers / (width + 1)))
    return tuple((f"fc{i + 1}", (m, width)) for i in range(n_layers))


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
    ap.add_argument("--val-examples", type=int, default=0,
                    help="per-example LCA of this many validation examples (with --val)")
    ap.add_argument("--heads", type=int, default=0,
                    help="groups {layer}.q.head{h} / {layer}.k.head{h} (and their per-example "
                         "values with --examples)")
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
                           label_noise=args.label_noise, val_examples=args.val_examples,
                           heads=args.heads)
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB) in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
