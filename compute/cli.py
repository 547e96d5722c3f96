"""``lca-run``: train a reference network with online LCA and write a run bundle."""

from __future__ import annotations

import argparse
import pickle
import signal
import sys
import threading
from pathlib import Path

from compute.config import (
    DATASETS,
    MEMORY_FORMATS,
    NETS,
    OPTIMIZERS,
    PRECISIONS,
    ConfigError,
    RunConfig,
)
from compute.lca import METHODS


def _key_value(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected LAYER=VALUE, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = argparse.ArgumentParser(
        prog="lca-run", description="Train a network and compute its exact full-dataset Loss "
        "Change Allocation online, writing one HDF5 run bundle.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--net", choices=NETS, default=d.net)
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    p.add_argument("--data-root", default=None, help="dataset directory (default: per dataset)")
    p.add_argument("--rgb32", action="store_true", help="pad 28x28 grey images to 3x32x32")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N train")
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (0 = none)")
    p.add_argument("--betas", type=float, nargs=2, default=d.betas, help="Adam betas")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--iters", type=int, default=d.iters)
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--tol", type=float, default=d.tol, help="adaptive: |dL - sum A| target")
    p.add_argument("--max-halvings", type=int, default=d.max_halvings)
    p.add_argument("--chunk-size", type=int, default=d.chunk_size,
                   help="examples per full-dataset pass chunk (fixes BatchNorm groups)")
    p.add_argument("--chunking", choices=("class", "mixed"), default=None)
    p.add_argument("--no-per-class", dest="per_class", action="store_false",
                   help="skip the per-class x layer split")
    p.add_argument("--val-lca", action="store_true", help="also allocate the validation loss")
    p.add_argument("--lca-stride", type=int, default=d.lca_stride,
                   help="store per-parameter LCA as exact sums over windows of S iterations")
    p.add_argument("--save-trajectory", action="store_true", help="store theta_t every iteration")
    p.add_argument("--layer-lr", type=_key_value, action="append", default=[],
                   metavar="LAYER=LR")
    p.add_argument("--layer-momentum", type=_key_value, action="append", default=[],
                   metavar="LAYER=M")
    p.add_argument("--freeze", action="append", default=[], metavar="LAYER")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--memory-format", choices=MEMORY_FORMATS, default=d.memory_format,
                   help="conv activation layout; channels_last is faster but run "
                   "--precision-check first (fp32 BatchNorm loses precision on CPU)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the full-dataset gradient passes (slow first iteration)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--out", type=Path, default=None, help="bundle path (default runs/NAME.h5)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN.h5",
                   help="continue a killed run from its last checkpoint (other flags ignored)")
    p.add_argument("--precision-check", action="store_true",
                   help="compare this precision's per-parameter LCA with float64 on a few steps")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(a: argparse.Namespace) -> RunConfig:
    return RunConfig(
        net=a.net, dataset=a.dataset, data_root=a.data_root, rgb32=a.rgb32,
        train_size=a.train_size, val_size=a.val_size, optimizer=a.optimizer, lr=a.lr,
        momentum=a.momentum, betas=tuple(a.betas), weight_decay=a.weight_decay,
        batch_size=a.batch_size, iters=a.iters, method=a.method, tol=a.tol,
        max_halvings=a.max_halvings, chunk_size=a.chunk_size, chunking=a.chunking,
        per_class=a.per_class, val_lca=a.val_lca, lca_stride=a.lca_stride,
        save_trajectory=a.save_trajectory, layer_lr=dict(a.layer_lr),
        layer_momentum=dict(a.layer_momentum), freeze=list(a.freeze), seed=a.seed,
        device=a.device, precision=a.precision, memory_format=a.memory_format,
        compile=a.compile,
        checkpoint_every=a.checkpoint_every)


class Terminated(Exception):
    """SIGTERM arrived (e.g. torchrun stopping the survivors after a rank died)."""


def _on_sigterm(signum, frame):
    raise Terminated("terminated by SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)  # close the bundle as failed, not mid-write
    from compute import train  # torch import after argument parsing: fast --help
    from compute.distributed import init_from_env, shutdown

    try:
        init_from_env(args.device)
        if args.resume:
            path = train.run_lca(None, args.resume, resume=True, progress=not args.no_progress)
        else:
            cfg = config_from_args(args).validate()
            if args.precision_check:
                from compute.precision import precision_check

                print(precision_check(cfg))
                return 0
            name = f"{cfg.net}_{cfg.dataset}_{cfg.optimizer}_s{cfg.seed}.h5"
            out = args.out
            if out is None:
                out = Path("runs") / name
                out.parent.mkdir(exist_ok=True)
            path = train.run_lca(cfg, out, progress=not args.no_progress)
    except (ConfigError, FileNotFoundError, train.RunFailed, pickle.UnpicklingError) as e:
        print(f"lca-run: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError | FileNotFoundError) else 1
    except ValueError as e:  # e.g. a corrupt dataset file
        print(f"lca-run: error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
