"""A runs directory with synthetic bundles (shared by tests/lcaviz/test_app*.py and e2e)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lcaviz.bundle.synthetic import write_synthetic_bundle

FC_LAYERS = (("fc1", (20, 30)), ("fc2", (10, 20)))
CONV_LAYERS = (("conv1", (4, 2, 3, 3)), ("fc", (5, 16)))


def make_runs_dir(root: Path) -> Path:
    """``root/runs`` with fc.h5 (trajectory, per-class, planted peaks), fc_seed3.h5 (same
    layers, shorter), nested/conv.h5 (stride 3), a corrupt file and a symlink that points
    outside."""
    runs = root / "runs"
    (runs / "nested").mkdir(parents=True)
    write_synthetic_bundle(runs / "fc.h5", n_iters=60, layers=FC_LAYERS, n_classes=3,
                           sync_peaks=3, save_trajectory=True, val_lca=True, seed=0)
    write_synthetic_bundle(runs / "nested" / "conv.h5", n_iters=30, layers=CONV_LAYERS,
                           n_classes=3, stride=3, seed=1, per_class=False)
    write_synthetic_bundle(runs / "fc_seed3.h5", n_iters=40, layers=FC_LAYERS, n_classes=3,
                           seed=3, per_class=False, help_fraction=0.6)
    (runs / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    outside = root / "outside.h5"
    write_synthetic_bundle(outside, n_iters=5, layers=FC_LAYERS, n_classes=3, seed=2)
    os.symlink(outside, runs / "escape.h5")
    return runs


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return make_runs_dir(tmp_path_factory.mktemp("lcaviz"))
