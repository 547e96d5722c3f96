"""Phases, per-component sums and pairwise synchrony of a grokking run, on a constructed run
whose accuracies, losses and LCA are known, so every number the report prints can be checked."""

from pathlib import Path

import numpy as np
import pytest

from lcaviz.analysis import grokking as gk
from lcaviz.reports import findings

T, G = 400, 4
NAMES = ["embed", "attn.q", "attn.v", "unembed"]


class FakeRun:
    """The accessors the grokking analysis reads, with exactly known values."""

    def __init__(self, planted: list[int]):
        rng = np.random.default_rng(0)
        self.path = Path("fake.h5")
        self.n_iters, self.n_params, self.method = T, 123, "rk4"
        self.layer_names, self.has_val, self.device_name = NAMES, True, "cpu"
        self.config = {"net": "transformer", "dataset": "modular-addition", "modulus": 7,
                       "train_fraction": 0.4, "optimizer": "adamw", "lr": 1e-3,
                       "betas": [0.9, 0.98], "weight_decay": 1.0, "batch_size": 10, "seed": 0}
        self._tr = rng.normal(0, 1e-3, (T, G))
        self._va = rng.normal(0, 1e-3, (T, G))
        for t in planted:  # strong simultaneous minima in every component
            self._tr[t] -= 1.0
        self._acc_t = np.clip(np.arange(T + 1) / 50, 0, 1)  # 100 % from iteration 50
        self._acc_v = np.clip((np.arange(T + 1) - 100) / 200, 0, 1)  # 50 % at 200, 95 % at 290
        self._res_t = rng.normal(0, 1e-6, T)  # ΔL_t − ΣA_t
        self._res_v = rng.normal(0, 1e-6, T)

    def accuracy_train(self):
        return self._acc_t

    def accuracy_val(self):
        return self._acc_v

    def loss_train(self):
        return np.concatenate([[2.0], 2.0 + np.cumsum(self._tr.sum(1) + self._res_t)])

    def loss_val(self):
        return np.concatenate([[2.0], 2.0 + np.cumsum(self._va.sum(1) + self._res_v)])

    def lca_layer(self):
        return self._tr

    def lca_val_layer(self):
        return self._va

    def seconds(self):
        return np.full(T, 0.25)


PLANTED = [40, 90, 150, 220, 300, 360]


def test_phases_follow_the_accuracies_and_sum_exactly():
    run = FakeRun(PLANTED)
    ph = gk.phases(run)
    assert [(p.name, p.start, p.end) for p in ph] == [
        ("memorisation", 0, 50), ("plateau", 50, 200), ("generalisation", 200, 290),
        ("after", 290, T)]
    for p in ph:
        np.testing.assert_allclose(p.lca_val, run._va[p.start:p.end].sum(0), rtol=1e-12)
        assert p.d_val == pytest.approx(float(run.loss_val()[p.end] - run.loss_val()[p.start]))
        assert p.residual_val == pytest.approx(run._res_v[p.start:p.end].sum(), abs=1e-12)
        assert p.residual_train == pytest.approx(run._res_t[p.start:p.end].sum(), abs=1e-12)


def test_a_run_that_never_generalises_has_no_generalisation_phase():
    run = FakeRun(PLANTED)
    run._acc_v = np.full(T + 1, 0.3)
    assert [p.name for p in gk.phases(run)] == ["memorisation", "plateau"]
    assert gk.phases(run)[-1].end == T


def test_planted_simultaneous_peaks_are_found_beyond_the_shift_baseline():
    run = FakeRun(PLANTED)
    s = gk.synchrony_all(run._tr, n_resamples=400)
    assert s["aligned"] == PLANTED and s["actual"] == len(PLANTED)
    assert s["p_floor"] == max(5.0 ** -(G - 1), 1 / 401)  # resamples or shifts: the larger
    assert s["p"] < 0.05 and s["baseline"] < 1
    # the validation series has no planted peaks: nothing beyond the baseline
    v = gk.synchrony_all(run._va, n_resamples=400)
    assert v["p"] > 0.05


def test_report_section_states_phases_leaders_and_synchrony():
    run = FakeRun(PLANTED)
    text = findings.section(run, n_resamples=100)
    assert "| memorisation | 0–50 |" in text and "| generalisation | 200–290 |" in text
    assert "First iteration at: train 100 %: 50; validation 50 %: 200; validation 95 %: 290" \
        in text
    assert f"(iterations {', '.join(map(str, PLANTED))})" in text
    assert "0.250 s per iteration" in text and "1.7 min in all" in text
    assert text.count("| embed |") == 2  # validation and training tables


def test_without_validation_lca_the_analysis_says_what_is_missing():
    run = FakeRun(PLANTED)
    run.has_val = False
    with pytest.raises(ValueError, match="--val-lca"):
        gk.phases(run)


def test_a_phase_whose_training_residual_dwarfs_its_loss_change_is_flagged():
    """After memorisation the training loss is ~1e-7: a few spiky steps that one Simpson
    interval does not resolve make the phase's residual larger than its ΔL (the grokking
    sample: +2.0e-3 against +6.7e-5). The report must say so, not print the sums as if exact."""
    run = FakeRun(PLANTED)
    text = findings.section(run, n_resamples=50)
    assert "Not resolved" not in text and "†" not in text  # residuals 1e-6 ≪ |ΔL|
    run._res_t[210] = 50.0  # one unresolved step in the generalisation phase
    text = findings.section(run, n_resamples=50)
    assert "**Not resolved:** the training-loss LCA of generalisation (residual +50" in text
    header = [ln for ln in text.splitlines() if ln.startswith("| component |")]
    assert header[0] == "| component | memorisation | plateau | generalisation | after |"
    assert header[1] == "| component | memorisation | plateau | generalisation† | after |"
    row = next(ln for ln in text.splitlines() if ln.startswith("| generalisation | 200–290 |"))
    assert row.split(" | ")[3] == "+50"  # the phase table's residual (train) column
