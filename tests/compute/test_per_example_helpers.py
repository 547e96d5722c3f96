"""The per-example helpers: the tracked subset (compute.lca.subset.example_subset), label
noise (compute.data.noise.flip_labels) and what the viewer shows of an example
(compute.data.thumbnails)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute.data.noise import flip_labels
from compute.data.thumbnails import example_texts, example_thumbnails
from compute.lca.subset import example_subset, stratified_subset


def _labels(n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.tensor([0.5, 0.2, 0.2, 0.1]), n, replacement=True,
                             generator=g)


def test_example_subset_is_seeded_sorted_and_stratified():
    y = _labels()
    a, b, c = example_subset(y, 100, 3), example_subset(y, 100, 3), example_subset(y, 100, 4)
    assert a.dtype == torch.int64 and torch.equal(a, b) and not torch.equal(a, c)
    assert len(torch.unique(a)) == 100 and torch.equal(a, torch.sort(a).values)
    share = torch.bincount(y, minlength=4).double() / len(y) * 100
    assert (torch.bincount(y[a], minlength=4).double() - share).abs().max() < 1
    # another draw than the run's --lca-data subset of the same size and seed
    assert not np.array_equal(a.numpy(), stratified_subset(y.numpy(), 100, 3))


def test_example_subset_all_and_other_targets():
    y = _labels(50)
    assert torch.equal(example_subset(y, None, 0), torch.arange(50))
    assert torch.equal(example_subset(y, 80, 0), torch.arange(50))
    reg = example_subset(torch.randn(50), 10, 1)  # regression targets: a uniform subset
    assert len(reg) == 10 and torch.equal(reg, example_subset(torch.randn(50), 10, 1))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="subset size"):
            example_subset(y, bad, 0)


def test_flip_labels_is_seeded_and_every_flipped_label_changes():
    y = _labels()
    noisy, flipped, original = flip_labels(y, 0.2, 4, seed=7)
    again = flip_labels(y, 0.2, 4, seed=7)
    assert torch.equal(noisy, again[0]) and torch.equal(flipped, again[1])
    assert not torch.equal(flipped, flip_labels(y, 0.2, 4, seed=8)[1])
    assert len(flipped) == 200 and len(torch.unique(flipped)) == 200
    assert torch.equal(flipped, torch.sort(flipped).values) and flipped.dtype == torch.int64
    assert torch.equal(original, y[flipped])
    assert bool((noisy[flipped] != y[flipped]).all())
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[flipped] = False
    assert torch.equal(noisy[rest], y[rest]) and noisy.dtype == y.dtype
    # the new class is uniform over the other three: each shift 1, 2, 3 about a third
    shifts = torch.bincount((noisy[flipped] - y[flipped]) % 4, minlength=4)
    assert shifts[0] == 0 and shifts[1:].min() > 40
    assert len(flip_labels(y, 0.0, 4, 0)[1]) == 0
    for args, match in (((y, 1.5, 4, 0), "fraction"), ((y, 0.1, 1, 0), "2 classes"),
                        ((y, 0.1, 3, 0), "0..2"), ((y.double(), 0.1, 4, 0), "integer")):
        with pytest.raises(ValueError, match=match):
            flip_labels(*args)


def test_thumbnails_and_texts():
    gray = torch.rand(5, 1, 4, 3)
    t = example_thumbnails(gray, [4, 0])
    assert t.dtype == np.uint8 and t.shape == (2, 4, 3)
    assert np.array_equal(t[0], (gray[4, 0] * 255).round().to(torch.uint8).numpy())
    rgb = example_thumbnails(torch.rand(5, 3, 4, 3), torch.tensor([1]))
    assert rgb.shape == (1, 4, 3, 3) and rgb.dtype == np.uint8
    normalised = example_thumbnails(torch.randn(3, 1, 4, 4) * 3, [0, 1, 2])
    assert normalised.min() == 0 and normalised.max() == 255  # scaled per image
    tokens = torch.tensor([[3, 5, 7], [6, 6, 7]])
    assert example_thumbnails(tokens.double(), [0]) is None
    assert example_thumbnails(torch.rand(5, 2, 4, 4), [0]) is None
    texts = example_texts("modular-addition", tokens.double(), torch.tensor([1, 5]), [1, 0], 7)
    assert texts == ["6 + 6 ≡ 5 (mod 7)", "3 + 5 ≡ 1 (mod 7)"]
    assert example_texts("modular-addition", tokens, torch.tensor([1, 5]), [0], None) == [
        "3 + 5 ≡ 1 (mod 7)"]
    assert example_texts("mnist", gray, torch.zeros(5), [0], None) is None
