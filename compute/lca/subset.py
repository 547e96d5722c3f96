"""The training examples whose loss LCA allocates: all of them, a fixed class-stratified subset
(``lca-run --lca-data N|fraction``) or a fresh one every iteration (``--lca-data-resample``).

A stratified subset of n of the N training examples takes n_c examples of class c, drawn
uniformly without replacement within the class, where n_c is n·N_c/N rounded *at random*: down
or up, up with probability equal to the fractional part (systematic sampling of the
remainders, so Σ_c n_c = n exactly and |n_c − n·N_c/N| < 1: proportions to ±1 example).
Then E[n_c] = n·N_c/N, so the plain mean loss of the subset, L_S = (1/n) Σ_{i∈S} ℓ_i, is an
unbiased estimate of the full loss L = (1/N) Σ_i ℓ_i, and so is its gradient at every θ.
The LCA of a step on S uses only gradients along the (fixed) training path and is linear in
them, so for a fresh S each step (``--lca-data-resample``) E_S[A_S] equals the full-data LCA
of the same quadrature, per parameter. (For BatchNorm nets the loss of a chunk is not a sum
of per-example terms, so this holds only approximately there.)

Everything is a pure function of the seed (and the iteration, when resampling), so resumed
runs draw the same subsets.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch

SUBSET_STREAM = 17  # SeedSequence([seed, 17]) for the fixed subset, [seed, 17, t + 1] per step
EXAMPLE_STREAM = 24  # the tracked examples of per-example LCA (another draw than --lca-data's)


def subset_size(spec: str | int | float | None, n_total: int) -> int:
    """The number of examples ``--lca-data`` asks for.

    Args:
        spec: ``None`` (all), an integer count (``"5000"``), a fraction with a decimal point
            (``"0.1"``, ``"1.0"`` = all) or a percentage (``"5%"``).
        n_total: N, the size of the training set.

    Raises:
        ValueError: not a count in 1..N or a fraction in (0, 1].
    """
    if spec is None:
        return n_total
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            frac = float(text[:-1]) / 100
        elif re.fullmatch(r"\d+", text):
            n = int(text)
            if not 1 <= n <= n_total:
                raise ValueError
            return n
        else:
            frac = float(text)
    except ValueError:
        raise ValueError(f"--lca-data {spec!r}: give a count in 1..{n_total:,}, a fraction in "
                         "(0, 1] such as 0.1, or a percentage such as 5%") from None
    if not 0 < frac <= 1:
        raise ValueError(f"--lca-data {spec!r}: the fraction must be in (0, 1]")
    return max(1, min(n_total, int(round(frac * n_total))))


def class_counts(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """How many examples of each class a stratified subset of ``n`` takes, (C,) int64.

    n·N_c/N rounded down, plus one for the classes that systematic sampling of the
    remainders picks (each with probability equal to its remainder; integer arithmetic).
    """
    y = np.asarray(y)
    counts = np.bincount(y, minlength=int(y.max()) + 1 if y.size else 0).astype(np.int64)
    N = int(counts.sum())
    floor, rem = np.divmod(n * counts, N)  # n·N_c = floor·N + rem, rem in [0, N)
    start = int(rng.integers(N))  # points start, start + N, start + 2N ... on [0, Σ rem)
    hi = np.cumsum(rem)
    lo = hi - rem
    extra = -((start - hi) // N) - (-((start - lo) // N))  # ceil((b-s)/N) - ceil((a-s)/N)
    out = floor + extra
    assert int(out.sum()) == n, (out, n)
    return out


def stratified_subset(y: np.ndarray, n: int, seed: int, t: int | None = None, *,
                      stream: int = SUBSET_STREAM) -> np.ndarray:
    """Sorted indices of a class-stratified subset of ``n`` examples (see module docstring).

    Args:
        y: (N,) integer labels.
        n: subset size, 1..N (N returns every index).
        seed: the run's seed.
        t: None for the run's fixed subset; the iteration for ``--lca-data-resample``.

    Returns:
        (n,) int64, increasing.
    """
    y = np.asarray(y).astype(np.int64)
    if n >= len(y):
        return np.arange(len(y), dtype=np.int64)
    key = [int(seed), int(stream)] + ([] if t is None else [int(t) + 1])
    rng = np.random.default_rng(np.random.SeedSequence(key))
    counts = class_counts(y, n, rng)
    parts = [rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
             for c, k in enumerate(counts) if k]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def example_subset(y: torch.Tensor, k: int | None, seed: int) -> torch.Tensor:
    """The examples per-example LCA tracks: all, or a seeded subset of ``k``.

    Args:
        y: (N,) targets. Integer class labels give a class-stratified subset (as
            :func:`stratified_subset`, on a stream of its own); other targets a uniform one.
        k: how many (1..N); None or k >= N: all of them.
        seed: the run's seed (the same seed gives the same subset).

    Returns:
        (N_e,) int64, sorted, on the CPU.

    Raises:
        ValueError: k < 1.
    """
    n = len(y)
    if k is None or (not isinstance(k, bool) and isinstance(k, (int, np.integer)) and k >= n):
        return torch.arange(n, dtype=torch.int64)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"per-example subset size must be a whole number >= 1, got {k!r}")
    labels = torch.as_tensor(y).detach().cpu()
    if labels.is_floating_point() or labels.dim() != 1 or bool((labels < 0).any()):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), EXAMPLE_STREAM]))
        idx = np.sort(rng.choice(n, size=int(k), replace=False))
    else:
        idx = stratified_subset(labels.numpy(), int(k), seed, stream=EXAMPLE_STREAM)
    return torch.from_numpy(idx.astype(np.int64))


def indices_hash(idx: np.ndarray) -> str:
    """SHA-256 of the indices as little-endian int64 (recorded so a subset can be checked)."""
    return hashlib.sha256(np.asarray(idx, "<i8").tobytes()).hexdigest()


def allocated_loss_text(n: int, n_total: int, resample: bool = False) -> str:
    """What the run allocates, in words: ``"loss on 5,000 of 55,000 training examples"``."""
    if n >= n_total and not resample:
        return f"loss on all {n_total:,} training examples"
    text = f"loss on {n:,} of {n_total:,} training examples"
    return text + (" (a fresh stratified subset each iteration)" if resample else "")
