"""The per-example grokking analysis and its report section, on a constructed run whose
per-example values are planted so that every printed number can be checked."""

import numpy as np
import pytest

from lcaviz.analysis import grokking_examples as ge
from lcaviz.reports import grokking_examples as report
from tests.lcaviz.test_grokking_findings import PLANTED, FakeRun

N_E, ROW = 40, 25  # tracked pairs (all of them), iterations per row


class FakeExamplesRun(FakeRun):
    """FakeRun (phases 0–50, 50–200, 200–290, 290–400) with per-example rows: component 0
    lowers every pair's loss by 0.1 per row in memorisation, 0.01 later; components 1 and 2
    move pairs in opposite directions (x_1 = −x_2 per pair); component 3 changes nothing.
    Losses follow the rows exactly, except a planted residual in the last phase."""

    def __init__(self, residual_after: float = 0.0):
        super().__init__(PLANTED)
        T = self.n_iters
        self.row_windows = np.array([(s, s + ROW) for s in range(0, T, ROW)])
        R = len(self.row_windows)
        rng = np.random.default_rng(1)
        x = np.zeros((R, N_E, 4))  # N · E per row
        x[:, :, 0] = -0.01
        x[:2, :, 0] = -0.1  # rows 0, 1 = memorisation (0–50)
        swing = rng.normal(0, 1, (R, N_E))
        x[:, :, 1], x[:, :, 2] = swing, -swing
        self._rows = x / N_E
        self.has_examples, self.n_examples = True, N_E
        self.config = {**self.config, "per_example_of": N_E}
        loss = np.empty((R + 1, N_E))
        loss[0] = 3.0
        loss[1:] = 3.0 + np.cumsum(x.sum(2), 0)
        loss[R] += residual_after  # the last row's end: inside the 'after' phase
        self._loss = loss

    has_val_examples = False

    def has_example_set(self, split, by):
        return split == "train" and by == "layer"

    def example_lca_rows(self, *, split="train", by="layer"):
        assert (split, by) == ("train", "layer")
        return self._rows

    def example_loss(self, *, split="train"):
        return self._loss[:-1]

    def example_loss_last(self, *, split="train"):
        return self._loss[-1]


def test_phases_are_whole_rows_nearest_to_the_accuracy_marks():
    ph = ge.example_phases(FakeExamplesRun())
    # marks 0, 50, 200, 290, 400 -> row starts 0, 50, 200, 300 (|300−290| < |275−290|), end
    assert [(p.name, p.r0, p.r1, p.start, p.end) for p in ph] == [
        ("memorisation", 0, 2, 0, 50), ("plateau", 2, 8, 50, 200),
        ("generalisation", 8, 12, 200, 300), ("after", 12, 16, 300, 400)]
    np.testing.assert_allclose(ph[0].x[:, 0], -0.2, rtol=1e-12)  # N · Σ E over two rows


def test_component_stats_on_known_columns():
    x = np.array([[-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [-2.0, 1.0, 0.0], [-4.0, -1.0, 0.0]])
    s = ge.component_stats(x)
    np.testing.assert_allclose(s["mean"], [-2.0, 0.0, 0.0])
    np.testing.assert_allclose(s["lowered"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(s["cancelled"][:2], [0.0, 1.0])  # one way / all cancels
    np.testing.assert_allclose(s["top10"][:2], [0.5, 0.25])  # top 1 of 4: 4/8, 1/4
    assert np.isnan(s["cancelled"][2]) and np.isnan(s["top10"][2])  # changed nothing


def test_rank_correlation_is_spearman_with_average_ties():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert ge.rank_correlation(a, np.exp(a)) == pytest.approx(1.0)
    assert ge.rank_correlation(a, -a ** 3) == pytest.approx(-1.0)
    b = np.array([1.0, 1.0, 2.0, 3.0, 3.0])  # ranks 0.5, 0.5, 2, 3.5, 3.5
    expect = np.corrcoef([0, 1, 2, 3, 4], [0.5, 0.5, 2, 3.5, 3.5])[0, 1]
    assert ge.rank_correlation(a, b) == pytest.approx(expect, abs=1e-12)
    assert np.isnan(ge.rank_correlation(a, np.ones(5)))


def test_section_reports_shares_the_hand_over_and_no_false_flag():
    text = report.section(FakeExamplesRun())
    assert "| memorisation | 0–50 | -0.2 | 100 % |" in text  # mean Δℓ_n, every pair fell
    assert "†" not in text  # the losses follow the rows exactly
    row = next(ln for ln in text.splitlines() if ln.startswith("| embed |"))
    assert row.split(" | ")[1] == "100 % (0 %; top 10 %: 10 %)"  # every pair, alike
    # components 1 and 2 undo each other pair by pair: the most anti-correlated pair, ρ = −1
    assert "in memorisation (where one lowered a pair's loss the other raised it; Spearman's " \
           "ρ): `attn.q` / `attn.v` -1.00" in text


def test_a_phase_whose_per_example_residual_dominates_is_flagged():
    text = report.section(FakeExamplesRun(residual_after=50.0))
    assert "| after† | 300–400 |" in text
    assert "| component | memorisation | plateau | generalisation | after† |" in text
    assert "dominated by quadrature error" in text


def test_without_per_example_lca_the_analysis_says_what_is_missing():
    run = FakeExamplesRun()
    run.has_examples = False
    with pytest.raises(ValueError, match="--per-example"):
        ge.example_phases(run)
