"""Modular addition, the grokking task (Power et al. 2022; Nanda et al. 2023), generated here.

Every pair (a, b) with a, b in 0..p−1 is one example: the input is the token sequence
``[a, b, "="]`` (token ``p`` is "="; the vocabulary has p + 1 tokens) and the label is
``(a + b) mod p`` (p classes). A seeded permutation of the p² pairs puts its first
``round(train_fraction · p²)`` pairs in the training set and the rest in the validation set, so
the split is a pure function of (p, train_fraction, seed): disjoint, complete and the same on
every machine. The permutation order is kept, so a prefix (``train_size`` / ``val_size`` in
:func:`compute.data.datasets.load_splits`) is itself a random subset.

Inputs are int64 token ids, shape (N, 3). ``lca-run`` moves them to the model's float dtype
with the other datasets' images; the transformer (:mod:`compute.nets.transformer`) rounds them back
to integer ids, which is exact for any vocabulary below 2**24 (float32).
"""

from __future__ import annotations

import numpy as np
import torch

from compute.data.splits import Splits, TensorDataset

# the reference grokking run's settings (lca-run's defaults; see compute/nets/transformer.py)
DEFAULT_MODULUS = 97
DEFAULT_TRAIN_FRACTION = 0.4
SEQ_LEN = 3  # a, b, "="
MAX_MODULUS = 4096  # p² examples: 16.8 M at the limit, far beyond what full-batch LCA can take


def check_modular(modulus: int, train_fraction: float) -> None:
    """Raise ValueError unless p ≥ 2 and the fraction leaves ≥ 1 example on each side."""
    if (isinstance(modulus, bool) or not isinstance(modulus, (int, np.integer))
            or not 2 <= modulus <= MAX_MODULUS):
        raise ValueError(f"modulus must be an integer in 2..{MAX_MODULUS}, got {modulus!r}")
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)):
        raise ValueError(f"train_fraction must be a number in (0, 1), got {train_fraction!r}")
    n_train = round(float(train_fraction) * modulus * modulus)
    if not 0 < train_fraction < 1 or not 0 < n_train < modulus * modulus:
        raise ValueError(f"train_fraction must be in (0, 1) and leave at least one of the "
                         f"{modulus * modulus} pairs on each side, got {train_fraction!r}")


def all_pairs(modulus: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair in the order a·p + b: tokens (p², 3) int64 and labels (p²,) int64."""
    a, b = np.divmod(np.arange(modulus * modulus, dtype=np.int64), modulus)
    x = np.stack([a, b, np.full_like(a, modulus)], axis=1)  # (p², 3): a, b, "="
    return x, (a + b) % modulus


def split_indices(modulus: int, train_fraction: float, seed: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Pair indices (a·p + b) of the training and the validation set, in permutation order."""
    check_modular(modulus, train_fraction)
    n = modulus * modulus
    # one stream per (seed, p); the fraction only moves the cut, so a larger fraction's
    # training set contains a smaller one's
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(modulus)]))
    perm = rng.permutation(n)
    n_train = round(float(train_fraction) * n)
    return perm[:n_train], perm[n_train:]


def make_modular_addition(modulus: int = DEFAULT_MODULUS,
                          train_fraction: float = DEFAULT_TRAIN_FRACTION, seed: int = 0):
    """The train / validation :class:`~compute.data.datasets.Splits` of (a + b) mod p (no test)."""
    x, y = all_pairs(modulus)
    names = [str(c) for c in range(modulus)]

    def subset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), names,
                             "modular-addition")

    tr, va = split_indices(modulus, train_fraction, seed)
    return Splits(train=subset(tr), val=subset(va), test=None)
