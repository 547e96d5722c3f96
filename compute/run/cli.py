"""``lca-run``: train a reference network with online LCA and write a run bundle."""

from __future__ import annotations

import argparse
import pickle
import signal
import sys
import threading
import warnings
from pathlib import Path

from compute.engine.options import add_flags, options_from_args
from compute.run.config import (
    DATASETS,
    MEMORY_FORMATS,
    NETS,
    OPTIMIZERS,
    PRECISIONS,
    ConfigError,
    RunConfig,
)


def _key_value(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected LAYER=VALUE, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None


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
    g.add_argument("--label-noise", type=float, default=0.0, metavar="F",
                   help="flip the labels of a seeded fraction F of the training examples "
                   "(each to another class; the bundle records which); default: 0")
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
    groups = {"LCA": p.add_argument_group("LCA")}
    add_flags(p, groups)  # every LCA option, from its one definition (compute/engine/options)
    g = groups["LCA"]
    g.add_argument("--val-lca", action="store_true",
                   help="also allocate the validation loss")
    g.add_argument("--update-mask", choices=("none", "helping"), default=d.update_mask,
                   help="helping: train applying only the coordinates of each step whose "
                   "first-order LCA g(theta_t)_i * delta_i is negative (the optimizer's state "
                   "sees the unmasked step); default none")
    g = groups["what the bundle stores"]
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
    g = groups["device and precision"]
    g.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="dtype of the model and of every gradient")
    g.add_argument("--memory-format", choices=MEMORY_FORMATS, default=d.memory_format,
                   help="conv activation layout; auto: channels_last for conv nets on CUDA "
                   "when the automatic precision check passes with it, else contiguous "
                   "(always on CPU, where fp32 NHWC BatchNorm loses precision)")
    g.add_argument("--allow-tf32", action="store_true",
                   help="let CUDA matmuls and convs use TF32 (faster, ~1e-3 relative error: "
                   "flips LCA signs); default: full fp32, checked on the first iterations")
    g.add_argument("--precision-check", action="store_true",
                   help="compare this precision's per-parameter LCA with float64 on a few "
                   "steps, print the result and exit")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(a: argparse.Namespace) -> RunConfig:
    return RunConfig(
        **options_from_args(a),
        net=a.net, dataset=a.dataset, data_root=a.data_root, rgb32=a.rgb32,
        train_size=a.train_size, val_size=a.val_size, optimizer=a.optimizer, lr=a.lr,
        momentum=a.momentum, betas=tuple(a.betas), weight_decay=a.weight_decay,
        batch_size=a.batch_size, iters=a.iters, update_mask=a.update_mask, val_lca=a.val_lca,
        layer_lr=dict(a.layer_lr), layer_momentum=dict(a.layer_momentum),
        freeze=list(a.freeze), seed=a.seed, device=a.device, precision=a.precision,
        memory_format=a.memory_format, allow_tf32=a.allow_tf32,
        checkpoint_every=a.checkpoint_every, checkpoint_seconds=a.checkpoint_seconds,
        modulus=a.modulus, train_fraction=a.train_fraction, label_noise=a.label_noise)


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
