"""Direction changes of weight movements on a hand-made trajectory and a planted one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lcaviz.analysis import direction_changes, movement_oscillation
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._bundle_factory import SMALL_LAYERS, matrix_bundle

# columns: ++--++ (2 changes), constant, +0+-0- (zero moves ignored: 1 change), +-+-+- (5)
THETA = np.array([
    [0, 5, 0, 0], [1, 5, 1, 1], [2, 5, 1, 0], [1, 5, 2, 1],
    [0, 5, 1, 0], [1, 5, 1, 1], [2, 5, 0, 0],
], np.float32)


def test_direction_changes_by_hand():
    moves, changes = direction_changes(THETA)
    assert moves.tolist() == [6, 0, 4, 6] and changes.tolist() == [2, 0, 1, 5]


def test_movement_oscillation_from_bundle(tmp_path):
    lca = np.ones((6, 4), np.float32)
    path = matrix_bundle(tmp_path / "t.h5", lca, [2, 2], trajectory=THETA)
    with RunBundle.open(path) as b:
        o = movement_oscillation(b, budget_bytes=16)  # one row per block: streaming carries state
    assert o["n_weights"] == 4 and o["n_moving"] == 3 and o["n_changes"] == 8
    assert o["iters_per_change"] == pytest.approx(13 / 8)  # (5 + 3 + 5) move pairs / 8
    assert o["mean_run_length"] == pytest.approx(16 / 11)
    assert o["median_iters_per_change"] == pytest.approx(2.5)
    l0, l1 = o["layers"]
    assert l0["layer"] == "l0" and l0["iters_per_change"] == pytest.approx(5 / 2)
    assert l1["iters_per_change"] == pytest.approx(8 / 6)
    assert "gradient" in o["gradient_note"]


def test_planted_flip_rate(tmp_path):
    path = write_synthetic_bundle(tmp_path / "f.h5", n_iters=120, layers=SMALL_LAYERS,
                                  save_trajectory=True, flip_prob=0.25, per_class=False)
    with RunBundle.open(path) as b:
        o = movement_oscillation(b)
        assert o["n_moving"] == b.n_params - b.config["synthetic"]["n_dead"]
    assert o["iters_per_change"] == pytest.approx(4.0, rel=0.05)  # 1 / flip probability


def test_no_trajectory(tmp_path):
    path = matrix_bundle(tmp_path / "n.h5", np.ones((3, 2), np.float32), [2])
    with RunBundle.open(path) as b:
        assert movement_oscillation(b) is None
    moves, changes = direction_changes(np.zeros((1, 3)))
    assert moves.sum() == 0 and changes.sum() == 0
    assert math.isinf(movement_oscillation.__globals__["_stats"](moves, changes)
                      ["iters_per_change"])
