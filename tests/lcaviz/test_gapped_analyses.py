"""Analyses and run-page views of a bundle with gaps (``--lca-every 3``, issue 17.3) and with a
calibration against the full loss (17.2): every number is checked against a hand count.

The bundle: 24 iterations, iterations 0, 3, ..., 21 allocated (8 steps), two layers (4 and 2
parameters), two classes; the full training loss at θ_0, θ_6, ..., θ_24.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lcaviz.analysis import (
    conservation,
    cumulative_layer_lca,
    help_series,
    layer_helping,
    layer_totals,
    overall_helping,
    param_help_fraction,
    scan_values,
    summarize,
    synchrony,
)
from lcaviz.analysis.calibration import calibration
from lcaviz.bundle import RunBundle
from lcaviz.bundle.writer import BundleWriter, IterationRecord, LayoutInfo, layer_stats

T, K = 24, 3
ALLOC = np.arange(0, T, K)  # 8 allocated steps
SIZES = (4, 2)
# per-layer LCA of class 0 at the allocated steps: strict minima of the allocated series at
# steps 1, 3, 5 (layer 0) and 1, 4, 6 (layer 1): iterations 3, 9, 15 and 3, 12, 18; only
# iteration 3 is aligned. Filled with zeros instead, every step would be a minimum.
CLASS0 = np.array([[-0.5, -1, -0.5, -2, -0.5, -3, -0.5, -0.4],
                   [-0.5, -1, -0.5, -0.6, -2, -0.5, -1, -0.4]]).T  # (8, 2)
SIGNS = np.array([[-1, -1, 1, 0, -1, 1]] * 4 + [[-1, -1, -1, 1, 1, 0]] * 4)  # (8, 6)
RES = 1e-4  # each allocated step's residual


def per_param(j: int) -> np.ndarray:
    """Step j's LCA (6,): the signs above, scaled so each layer sums to CLASS0[j] (class 1
    allocates 0)."""
    s = SIGNS[j].astype(float) * np.array([1, 2, 3, 4, 5, 6]) * 0.01
    out = s.copy()
    for li, sl in enumerate((slice(0, 4), slice(4, 6))):
        out[sl][0] += CLASS0[j, li] - s[sl].sum()  # first parameter takes up the difference
    return out


def matrix() -> np.ndarray:
    """(8, 6): every allocated step's LCA."""
    return np.stack([per_param(j) for j in range(len(ALLOC))])


def write(path):
    P, L = sum(SIZES), len(SIZES)
    layer_of = np.repeat(np.arange(L), SIZES)
    layout = LayoutInfo(
        param_names=["a.weight", "b.weight"], param_shapes=[(4,), (2,)],
        param_offsets=np.array([0, 4, 6]), param_layer=np.arange(L, dtype=np.int32),
        param_module_type=["Linear", "Linear"], layer_names=["a", "b"], class_names=["x", "y"],
        config={"net": "hand", "dataset": "test", "optimizer": "sgd", "lca_every": K,
                "allocated_loss": "loss on 2 of 10 training examples"},
        method="rk4", iters_planned=T, lca_every=K, full_loss_every=6,
        allocated_loss="loss on 2 of 10 training examples", cumsum_every=2)
    loss = np.full(T + 1, np.nan)
    loss[0] = 3.0
    w = BundleWriter.create(path, layout, theta0=None, loss_train0=3.0, acc_train0=0.1,
                            flush_seconds=0.0, full_loss0=(3.1, 0.1))
    window = np.zeros(P)
    for t in range(T):
        j = t // K
        if t % K == 0:
            a = per_param(j)
            window += a
            sums, helped, hurt = layer_stats(a, layer_of, L)
            loss[t + 1] = loss[t] + a.sum() + RES
            rec = IterationRecord(
                loss_train=loss[t + 1], acc_train=0.5, loss_minibatch=1.0, residual=RES,
                splits=1, lca_layer=sums, help_count=helped, hurt_count=hurt, seconds=0.1,
                lca_class_layer=np.stack([sums, np.zeros(L)]))
        else:
            nan = np.full(L, np.nan)
            rec = IterationRecord(
                loss_train=np.nan, acc_train=np.nan, loss_minibatch=1.0, residual=np.nan,
                splits=-1, lca_layer=nan, help_count=np.zeros(L, np.int32),
                hurt_count=np.zeros(L, np.int32), seconds=0.01,
                lca_class_layer=np.full((2, L), np.nan), allocated=False)
            if t % K == K - 1 and t + 1 < T:  # the next step starts at θ_{t+1}
                loss[t + 1] = loss[t - 1]
                rec.loss_train = loss[t + 1]
        if (t + 1) % K == 0:
            rec.lca_row, window = window.copy(), np.zeros(P)
        if (t + 1) % 6 == 0:
            rec.full_loss = (t + 1, 3.1 - 0.1 * (t + 1) / 6, 0.2)
        w.append(rec)
    w.set_param_counters((matrix() < 0).sum(0), (matrix() != 0).sum(0))
    w.close("complete")
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("gapped") / "gapped.h5")
    with RunBundle.open(path) as b:
        yield b


def test_reader_marks_the_gaps(bundle):
    b = bundle
    np.testing.assert_array_equal(b.lca_iters(), ALLOC)
    assert b.is_gapped and b.lca_every == K and b.allocated().sum() == 8
    np.testing.assert_array_equal(b.row_windows, [[3 * j, 3 * j + 3] for j in range(8)])
    gaps = ~b.allocated()
    assert (b.lca_layer()[gaps] == 0).all() and np.isnan(b.lca_layer(gaps=np.nan)[gaps]).all()
    np.testing.assert_allclose(b.lca_layer()[ALLOC], CLASS0, atol=1e-12)
    np.testing.assert_allclose(b.rows().astype(float), [per_param(j) for j in range(8)],
                               rtol=1e-6)
    dL = b.loss_change()
    assert np.isnan(dL[gaps]).all()
    np.testing.assert_allclose(dL[ALLOC], CLASS0.sum(1) + RES, atol=1e-12)
    assert b.allocated_loss == "loss on 2 of 10 training examples"


def test_helping_counts_only_allocated_iterations(bundle):
    s = help_series(bundle)
    assert s.allocated.sum() == 8 and s.pct_help[~s.allocated].isna().all()
    A = matrix()
    nz, helped = (A != 0).sum(1), (A < 0).sum(1)
    assert 0 < helped.min() and helped.max() < nz.max()  # the counts vary: the test can fail
    np.testing.assert_allclose(s.pct_help[s.allocated], 100 * helped / nz)
    o = overall_helping(bundle)
    assert o["n_iters"] == 8
    assert o["pct_help"] == pytest.approx(100 * np.mean(helped / nz))
    assert o["pct_zero"] == pytest.approx(100 * np.mean(1 - nz / 6))
    lh = layer_helping(bundle)
    for li, sl in enumerate((slice(0, 4), slice(4, 6))):
        want = np.mean((A[:, sl] < 0).sum(1) / (A[:, sl] != 0).sum(1))
        assert lh.pct_help[li] == pytest.approx(100 * want)
    frac = param_help_fraction(bundle, denominator="all")  # over the 8 allocated steps
    np.testing.assert_allclose(frac, (A < 0).mean(0))


def test_layer_totals_are_sums_over_allocated_steps(bundle):
    np.testing.assert_allclose(layer_totals(bundle).total, CLASS0.sum(0), atol=1e-12)
    cum = cumulative_layer_lca(bundle)
    np.testing.assert_allclose(cum[-1], CLASS0.sum(0), atol=1e-12)
    np.testing.assert_allclose(cum[4], CLASS0[:2].sum(0), atol=1e-12)  # steps 0 and 3


def test_synchrony_uses_the_allocated_series(bundle):
    s = synchrony(bundle, k=20, n_resamples=50)
    assert s["n_allocated"] == 8
    assert s["peaks"][0] == [[3, 9, 15], [3, 12, 18]] and s["peaks"][1] == [[], []]
    assert s["aligned_iterations"][0] == [3] and s["actual_total"] == 1


def test_distributions_conservation_and_calibration(bundle):
    scan = scan_values(bundle, sample_size=0, layer_sample_size=0)
    assert scan.per_iteration and scan.n_rows == 8
    assert scan.rows_note == "per-iteration LCA of 8 allocated iterations (one every 3, 0–21)"
    assert scan.n_zero() == int((matrix() == 0).sum())
    c = conservation(bundle)
    assert c["n_iters"] == 8 and c["max_abs_residual"] == pytest.approx(RES)
    assert c["cum_error"] == pytest.approx(8 * RES / abs(CLASS0.sum() + 8 * RES))
    df = calibration(bundle)
    np.testing.assert_array_equal(df.iteration, [0, 6, 12, 18, 24])
    np.testing.assert_allclose(df.full_change, [0, -0.1, -0.2, -0.3, -0.4])
    cum = np.concatenate([[0], np.cumsum(CLASS0.sum(1))])  # after steps 0..j
    np.testing.assert_allclose(df.lca_total, cum[[0, 2, 4, 6, 8]], atol=1e-12)
    np.testing.assert_allclose(df.n_allocated, [0, 2, 4, 6, 8])
    np.testing.assert_allclose(df.scale[1:], 3.0)  # 6 iterations per 2 allocated steps
    np.testing.assert_allclose(df.lca_total_scaled[1:], 3 * df.lca_total[1:])
    s = summarize(bundle, shift_resamples=20)
    json.dumps(s, allow_nan=False)  # strict JSON: no NaN slipped through
    assert s["run"]["n_allocated"] == 8 and s["run"]["lca_every"] == K
    assert s["run"]["calibration"]["iteration"] == 24
    assert math.isclose(s["run"]["loss_change"], CLASS0.sum() + 8 * RES)


def test_run_page_views_of_a_gapped_run(bundle):
    from lcaviz.app import create_app, get_state
    from lcaviz.app.frames import frame_block, plan_items
    from lcaviz.app.pages import run_sync, run_views
    from lcaviz.app.queries import run_meta, subtitle

    state = get_state(create_app(bundle.path.parent))
    rid = state.run_id(bundle.path)
    c = run_views.Controls(run_id=rid)
    text = subtitle(run_meta(state.open(rid)[0]))
    assert "loss on 2 of 10 training examples" in text
    assert "LCA of one iteration in 3 (8 allocated)" in text
    fig = run_views.loss(state, c)
    full = [tr for tr in fig.data if tr.name == "full training loss"]
    assert len(full) == 1 and list(full[0].x) == [0, 6, 12, 18, 24]
    assert "gap" in fig.layout.title.text
    train = [tr for tr in fig.data if tr.name.startswith("allocated:")][0]
    assert "markers" in train.mode  # isolated values are drawn, gaps stay empty
    help_fig = run_views.help_time(state, c)
    assert np.isnan(np.asarray(help_fig.data[0].y, float)).sum() == 16  # the 16 gaps
    bars = run_views.layer_bars(state, c)
    np.testing.assert_allclose(bars.data[0].y, CLASS0.sum(0), atol=1e-12)
    x, _, _ = run_sync.class_curves(state, rid)
    assert np.isnan(x[~bundle.allocated()]).all()
    assert run_sync.peaks_view(state, rid, 0, 20).data
    plan = plan_items(bundle, 0, "auto", None)
    head, _ = frame_block(bundle, 0, plan, "cumulative", 1, 0, 8)
    json.dumps(head, allow_nan=False)  # the player's header stays valid JSON
    np.testing.assert_allclose(head["totals"][-1], CLASS0[:, 0].sum(), atol=1e-12)
