"""``lca-run``: train a reference network with online LCA and write a run bundle."""

from __future__ import annotations

import argparse
import pickle
import signal
import sys
import threading
import warnings
from pathlib import Path

from compute.lca.integrator import METHODS
from compute.run.config import (
    DATASETS,
    MEMORY_FORMATS,
    NETS,
    OPTIMIZERS,
    PRECISIONS,
    ConfigError,
    RunConfig,
)
from lcaviz.bundle.schema import COMPRESSIONS, STORAGES


def _key_value(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected LAYER=VALUE, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None


def _chunk_size(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") \
            from None


class _Help(argparse.RawDescriptionHelpFormatter):
    """One line of help per flag with its default and choices; no "(default: None)" noise."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is False or default == [] \
                or default == argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = argparse.ArgumentParser(
        prog="lca-run", formatter_class=_Help,
        description="Train a network and compute its exact full-dataset Loss Change "
        "Allocation online, writing one HDF5 run bundle.",
        epilog="examples:\n  lca-run --net mnist_fc --iters 1000 --lca-rows dense:220,5 "
        "--out runs/fc.h5\n  lca-run --resume runs/fc.h5")
    g = p.add_argument_group("network and data")
    g.add_argument("--net", choices=NETS, default=d.net, help="reference network")
    g.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="training data")
    g.add_argument("--data-root", default=None,
                   help="dataset directory (default: the dataset's own, see lca-data)")
    g.add_argument("--rgb32", action="store_true", help="pad 28x28 grey images to 3x32x32")
    g.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training examples (default: all)")
    g.add_argument("--val-size", type=int, default=None,
                   help="validation examples (default: the dataset's split)")
    g.add_argument("--modulus", type=int, default=d.modulus,
                   help="modular-addition: p (examples are all p^2 pairs a, b < p)")
    g.add_argument("--train-fraction", type=float, default=d.train_fraction,
                   help="modular-addition: fraction of the pairs that train (seeded split; "
                   "the rest validate)")
    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="optimizer")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (0 = none)")
    g.add_argument("--betas", type=float, nargs=2, default=d.betas, metavar=("B1", "B2"),
                   help="Adam betas")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="weight decay: added to the gradient (L2) for sgd and adam, decoupled "
                   "for adamw")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="minibatch size")
    g.add_argument("--iters", type=int, default=d.iters, help="optimizer steps")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the initialisation and the minibatch order")
    g.add_argument("--layer-lr", type=_key_value, action="append", default=[],
                   metavar="LAYER=LR", help="own learning rate for a layer (repeatable)")
    g.add_argument("--layer-momentum", type=_key_value, action="append", default=[],
                   metavar="LAYER=M", help="own SGD momentum for a layer (repeatable)")
    g.add_argument("--freeze", action="append", default=[], metavar="LAYER",
                   help="do not train this layer (repeatable)")
    g = p.add_argument_group("LCA")
    g.add_argument("--method", choices=METHODS, default=d.method,
                   help="path integral: gradient at the start only, trapezoid (1 new "
                   "gradient per step), Simpson (1,4,1)/6 (2), or adaptive Simpson until "
                   "|dL - sum A| < --tol")
    g.add_argument("--tol", type=float, default=d.tol, help="adaptive: |dL - sum A| target")
    g.add_argument("--rtol", type=float, default=d.rtol,
                   help="adaptive: also require |dL - sum A| <= RTOL*|dL|; 0: off")
    g.add_argument("--max-halvings", type=int, default=d.max_halvings,
                   help="adaptive: at most 2^N Simpson intervals per iteration")
    g.add_argument("--chunk-size", type=_chunk_size, default=d.chunk_size, metavar="N|auto",
                   help="examples per full-dataset pass; auto: the largest whose forward+"
                   "backward fits 25%% of free GPU memory / 1 GiB on CPU (never changes the "
                   "loss; on a BatchNorm net without --bn-group an integer is the group, "
                   "deprecated)")
    g.add_argument("--bn-group", type=int, default=None, metavar="N",
                   help="BatchNorm nets: examples per normalisation group, part of the loss "
                   "(default: 1000, the loss of earlier runs); several groups run per pass")
    g.add_argument("--chunking", choices=("class", "mixed"), default=None,
                   help="class-pure or data-order chunks (default: class unless BatchNorm)")
    g.add_argument("--no-per-class", dest="per_class", action="store_false",
                   help="skip the per-class x layer split (default: split per class)")
    g.add_argument("--val-lca", action="store_true",
                   help="also allocate the validation loss")
    g.add_argument("--lca-error-every", type=int, default=d.lca_error_every, metavar="K",
                   help="at iterations 0, K, 2K, ... also integrate on 4x the Simpson intervals "
                   "and store the per-parameter error; 0: off")
    g.add_argument("--counterfactual-every", type=int, default=d.counterfactual_every,
                   metavar="K", help="the causal test: at iterations 0, K, 2K, ... also "
                   "evaluate the full loss after only the helping, only the hurting and only "
                   "the zero-LCA coordinates of the step (3 forward passes); 0: off")
    g.add_argument("--update-mask", choices=("none", "helping"), default=d.update_mask,
                   help="helping: train applying only the coordinates of each step whose "
                   "first-order LCA g(theta_t)_i * delta_i is negative (the optimizer's state "
                   "sees the unmasked step); default none")
    g = p.add_argument_group("cheaper LCA (docs/approximations.md)")
    g.add_argument("--lca-data", default=None, metavar="N|FRACTION",
                   help="allocate the loss of a seeded class-stratified subset: N examples, "
                   "a fraction such as 0.1 or a percentage such as 5%% (default: all)")
    g.add_argument("--lca-data-resample", action="store_true",
                   help="draw a fresh stratified subset of that size every iteration "
                   "(unbiased for the full loss change; 3 gradients per rk4 step, not 2)")
    g.add_argument("--lca-every", type=int, default=d.lca_every, metavar="K",
                   help="allocate only iterations 0, K, 2K, ... exactly (theta_t to "
                   "theta_t+1); the others are not allocated and are marked so")
    g.add_argument("--full-loss-every", type=int, default=d.full_loss_every, metavar="K",
                   help="also evaluate the full training loss at theta_0, theta_K, ... and "
                   "theta_T (to calibrate a subset or sparse run); 0: never")
    g = p.add_argument_group("what the bundle stores")
    g.add_argument("--lca-rows", default=None, metavar="SCHEDULE",
                   help="per-parameter rows: S (exact sums over windows of S iterations) or "
                   "dense:N,S (one row per iteration for the first N, then windows of S); "
                   "default: --lca-stride")
    g.add_argument("--lca-stride", type=int, default=d.lca_stride,
                   help="shorthand for --lca-rows S")
    g.add_argument("--lca-layers", default=None, metavar="L1,L2",
                   help="layers that get per-parameter rows; 'none' for aggregates only "
                   "(per-layer, per-class, help/hurt stay for all; default: every layer)")
    g.add_argument("--lca-storage", choices=STORAGES, default=d.lca_storage,
                   help="per-parameter rows as float32, or bfloat16 (half the size, ~3 "
                   "significant digits, zeros and signs exact)")
    g.add_argument("--lca-compression", choices=COMPRESSIONS, default=d.lca_compression,
                   help="lossless gzip + shuffle of the per-parameter rows (smaller files, "
                   "slower row reads)")
    g.add_argument("--save-trajectory", action="store_true",
                   help="store theta_t every iteration")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="checkpoint every N iterations ...")
    g.add_argument("--checkpoint-seconds", type=float, default=d.checkpoint_seconds,
                   help="... or every S seconds, whichever comes first")
    g.add_argument("--out", type=Path, default=None,
                   help="bundle path (default: runs/NET_DATASET_OPTIMIZER_sSEED.h5); an "
                   "existing file is never replaced without --overwrite")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (never one still being written)")
    g.add_argument("--resume", type=Path, default=None, metavar="RUN.h5",
                   help="continue a killed run from its last checkpoint (other flags ignored)")
    g = p.add_argument_group("device and precision")
    g.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="dtype of the model and of every gradient")
    g.add_argument("--memory-format", choices=MEMORY_FORMATS, default=d.memory_format,
                   help="conv activation layout; auto: channels_last for conv nets on CUDA "
                   "when the automatic precision check passes with it, else contiguous "
                   "(always on CPU, where fp32 NHWC BatchNorm loses precision)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the full-dataset gradient passes (slow first iteration)")
    g.add_argument("--allow-tf32", action="store_true",
                   help="let CUDA matmuls and convs use TF32 (faster, ~1e-3 relative error: "
                   "flips LCA signs); default: full fp32, checked on the first iterations")
    g.add_argument("--precision-check", action="store_true",
                   help="compare this precision's per-parameter LCA with float64 on a few "
                   "steps, print the result and exit")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _layers(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


def config_from_args(a: argparse.Namespace) -> RunConfig:
    return RunConfig(
        net=a.net, dataset=a.dataset, data_root=a.data_root, rgb32=a.rgb32,
        train_size=a.train_size, val_size=a.val_size, optimizer=a.optimizer, lr=a.lr,
        momentum=a.momentum, betas=tuple(a.betas), weight_decay=a.weight_decay,
        batch_size=a.batch_size, iters=a.iters, method=a.method, tol=a.tol, rtol=a.rtol,
        max_halvings=a.max_halvings, lca_error_every=a.lca_error_every,
        counterfactual_every=a.counterfactual_every, update_mask=a.update_mask,
        lca_data=a.lca_data, lca_data_resample=a.lca_data_resample, lca_every=a.lca_every,
        full_loss_every=a.full_loss_every,
        chunk_size=a.chunk_size, bn_group=a.bn_group, chunking=a.chunking,
        per_class=a.per_class, val_lca=a.val_lca, lca_stride=a.lca_stride,
        lca_rows=a.lca_rows, lca_layers=_layers(a.lca_layers), lca_storage=a.lca_storage,
        lca_compression=a.lca_compression,
        save_trajectory=a.save_trajectory, layer_lr=dict(a.layer_lr),
        layer_momentum=dict(a.layer_momentum), freeze=list(a.freeze), seed=a.seed,
        device=a.device, precision=a.precision, memory_format=a.memory_format,
        compile=a.compile, allow_tf32=a.allow_tf32,
        checkpoint_every=a.checkpoint_every, checkpoint_seconds=a.checkpoint_seconds,
        modulus=a.modulus, train_fraction=a.train_fraction)


_format_warning = warnings.formatwarning


def _one_line_notes(message, category, filename, lineno, line=None) -> str:
    """Deprecation notes (FutureWarning: an old flag's meaning kept) as one line of lca-run's
    own; any other warning keeps Python's format, with its source location."""
    if issubclass(category, FutureWarning):
        return f"lca-run: note: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


class Terminated(Exception):
    """SIGTERM arrived (e.g. torchrun stopping the survivors after a rank died)."""


def _on_sigterm(signum, frame):
    raise Terminated("terminated by SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_notes
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)  # close the bundle as failed, not mid-write
    from compute.lca.distributed import init_from_env, shutdown
    from compute.run import train  # torch import after argument parsing: fast --help

    out = args.resume or args.out
    try:
        init_from_env(args.device)
        if args.resume:
            path = train.run_lca(None, args.resume, resume=True, progress=not args.no_progress)
        else:
            cfg = config_from_args(args).validate()
            if args.precision_check:
                from compute.run.precision import precision_check

                print(precision_check(cfg))
                return 0
            name = f"{cfg.net}_{cfg.dataset}_{cfg.optimizer}_s{cfg.seed}.h5"
            if out is None:
                out = Path("runs") / name
                out.parent.mkdir(exist_ok=True)
            path = train.run_lca(cfg, out, overwrite=args.overwrite,
                                 progress=not args.no_progress)
    except (ConfigError, FileNotFoundError, train.RunFailed, pickle.UnpicklingError) as e:
        print(f"lca-run: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError | FileNotFoundError) else 1
    except ValueError as e:  # e.g. a corrupt dataset file
        print(f"lca-run: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as e:  # one line, not a traceback
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        hint = (f"; the bundle keeps every flushed iteration: resume with: lca-run --resume "
                f"{out}" if out is not None and Path(out).exists() else "")
        print(f"lca-run: {what}{hint}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    finally:
        shutdown()
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
