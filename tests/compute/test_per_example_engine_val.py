"""Per-group and validation per-example values through both faces of the engine (issue 24):
what ``lca-run`` and ``LCATracker`` hand the bundle writer (the IterationRecords and the
LayoutInfo, captured at the writer, so these tests need no reader of the new datasets).

Runs are float64 (lca-run ``--precision float64``; a float64 model in the tracker), so the
identities hold to 1e-10 of the largest term (measured ~1e-16: summation order only).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from compute import LCATracker
from compute.lca.subset import example_subset
from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle.writer import BundleWriter

RTOL = 1e-10
GROK = dict(net="transformer", dataset="modular-addition", modulus=7, train_fraction=0.5,
            optimizer="adamw", lr=1e-4, weight_decay=1.0, batch_size=12, iters=6,
            val_lca=True, per_class=False, method="rk4", precision="float64", lca_rows="2",
            checkpoint_every=2, seed=3)


@pytest.fixture
def captured(monkeypatch):
    """Every LayoutInfo and IterationRecord the writers of this test are given (copies)."""
    seen = {"layout": [], "records": []}
    create, append = BundleWriter.create.__func__, BundleWriter.append

    def on_create(cls, path, layout, **kw):
        seen["layout"].append(layout)
        return create(cls, path, layout, **kw)

    def on_append(self, rec):
        seen["records"].append(copy.deepcopy(rec))
        return append(self, rec)

    monkeypatch.setattr(BundleWriter, "create", classmethod(on_create))
    monkeypatch.setattr(BundleWriter, "append", on_append)
    return seen


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max()) <= rtol * float(np.abs(b).max())


def _group_layers(layout) -> np.ndarray:
    """The layer of each group of the layout (every group lies inside one)."""
    layer = np.repeat(np.asarray(layout.param_layer), np.diff(layout.param_offsets))
    return np.array([layer[ranges[0][0]] for _, ranges in layout.groups])


def _check_groups(rec_layer, rec_group, sel, layers, lca_group):
    """Σ_s over each layer's groups = the layer's column; Σ_n = the step's lca_group."""
    for li in np.unique(layers[sel]):
        cols = np.flatnonzero(layers[sel] == li)
        assert _close(rec_group[:, cols].sum(1), rec_layer[:, li])
    assert _close(rec_group.sum(0), lca_group[sel])


def test_lca_run_records_heads_and_validation_examples(tmp_path, captured):
    run_lca(RunConfig(**GROK, per_example="all"), tmp_path / "g.h5", progress=False)
    (layout,), records = captured["layout"], captured["records"]
    sel = layout.example_groups
    layers = _group_layers(layout)
    heads = [g for g, (name, _) in enumerate(layout.groups) if ".head" in name]
    assert sel.dtype == np.int64 and list(sel) == heads and len(heads) >= 8  # q, k, v, o
    n_val = layout.config["per_example_val_of"]
    ve = layout.val_examples
    assert np.array_equal(ve.index, np.arange(n_val)) and len(ve.label) == n_val
    assert len(ve.text) == n_val and "(mod 7)" in ve.text[0]
    assert layout.config["per_example_of"] == layout.examples.index.size
    change = 0.0
    for rec in records:
        assert rec.example_group.shape == (len(layout.examples.index), len(sel))
        assert rec.val_example.shape == (n_val, len(layout.layer_names))
        _check_groups(rec.example, rec.example_group, sel, layers, rec.lca_group)
        _check_groups(rec.val_example, rec.val_example_group, sel, layers, rec.lca_val_group)
        assert _close(rec.val_example.sum(0), rec.lca_val_layer)  # Σ_n E_val = lca_val_layer
        assert abs(rec.val_example_loss_after.mean() - rec.loss_val) <= 1e-12 * rec.loss_val
        change = change + rec.val_example.sum(1)
    # Σ_{t,l} E_val[t, n] − (ℓ_n(θ_T) − ℓ_n(θ_0)) / N_val is example n's quadrature residual
    # (here ~1e-3 of the largest change: ReLU kinks, which rk4 does not resolve; the smooth
    # net of the tracker test checks it tightly); summed over the examples it is the
    # validation integrator's own residual, exactly
    loss_change = (records[-1].val_example_loss_after - records[0].val_example_loss_before)
    gap = change - loss_change / n_val
    val_residual = sum(rec.val_residual for rec in records)
    assert abs(gap.sum() + val_residual) <= 1e-10 * np.abs(loss_change / n_val).sum()


def test_a_subset_k_tracks_the_same_seeded_validation_examples(tmp_path, captured):
    for name in ("a", "b"):
        run_lca(RunConfig(**{**GROK, "iters": 1}, per_example=5), tmp_path / f"{name}.h5",
                progress=False)
    a, b = captured["layout"]
    assert np.array_equal(a.val_examples.index, b.val_examples.index)
    assert len(a.val_examples.index) == 5 and len(a.examples.index) == 5
    rec = captured["records"][0]
    assert rec.val_example.shape[0] == 5 and rec.example_group.shape[0] == 5
    n_val = a.config["per_example_val_of"]
    labels = np.asarray([int(t.split("≡ ")[1].split(" ")[0]) for t in a.val_examples.text])
    assert np.array_equal(labels, a.val_examples.label)  # the text is the example's own
    assert n_val > 5


def test_example_subset_of_the_validation_labels_is_the_documented_draw():
    y = torch.tensor([0, 1, 2] * 8)
    assert torch.equal(example_subset(y, 5, 3), example_subset(y, 5, 3))
    assert not torch.equal(example_subset(y, 5, 3), example_subset(y, 5, 4))


def test_lca_every_records_validation_examples_only_on_allocated_steps(tmp_path, captured):
    run_lca(RunConfig(**GROK, per_example="all", lca_every=2), tmp_path / "e.h5",
            progress=False)
    records = captured["records"]
    for t, rec in enumerate(records):
        if t % 2:
            assert not rec.allocated and rec.val_example is None and rec.example_group is None
        else:
            assert _close(rec.val_example.sum(0), rec.lca_val_layer)
            assert rec.val_example_group is not None


def test_resume_gives_the_uninterrupted_group_and_validation_values(tmp_path, captured):
    cfg = RunConfig(**GROK, per_example=9)
    run_lca(cfg, tmp_path / "ref.h5", progress=False)
    ref = list(captured["records"])
    captured["records"].clear()
    out = tmp_path / "killed.h5"
    run_lca(cfg, out, progress=False, stop_after=5)  # last checkpoint at T = 4
    captured["records"].clear()
    run_lca(None, out, resume=True, progress=False)
    again = captured["records"]
    assert len(again) == 2  # iterations 4 and 5
    for got, want in zip(again, ref[4:], strict=True):
        for key in ("example", "example_group", "val_example", "val_example_group",
                    "val_example_loss_before", "val_example_loss_after"):
            assert getattr(want, key) is not None, key
            assert np.array_equal(getattr(got, key), getattr(want, key)), key


def test_the_tracker_records_user_groups_and_validation_examples(tmp_path, captured):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(60, 6, dtype=torch.float64), torch.randint(0, 3, (60,))
    xv, yv = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    groups = {"rows": [("0.weight", slice(0, 3)), ("0.bias", slice(0, 3))],
              "cols": [("2.weight", (slice(None), slice(0, 5)))]}
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with LCATracker(model, x, y, out=tmp_path / "t.h5", optimizer=opt, per_example=7,
                    val_inputs=xv, val_targets=yv, groups=groups, lca_rows=1) as lca:
        for t in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[t * 20:(t + 1) * 20]),
                                        y[t * 20:(t + 1) * 20]).backward()
            opt.step()
            lca.step()
    (layout,), records = captured["layout"], captured["records"]
    names = [layout.groups[g][0] for g in layout.example_groups]
    assert names == ["rows", "0.rest", "cols", "2.rest"]
    assert np.array_equal(layout.val_examples.index, example_subset(yv, 7, 0).numpy())
    assert layout.config["per_example_val_of"] == 20
    layers = _group_layers(layout)
    # per-example conservation of the validation loss with rk4 on a smooth net: Σ_{t,l}
    # E_val[t, n] = (ℓ_n(θ_T) − ℓ_n(θ_0)) / N_val up to the quadrature residual
    change = sum(rec.val_example.sum(1) for rec in records)
    loss_change = (records[-1].val_example_loss_after - records[0].val_example_loss_before) / 20
    resid = np.abs(change - loss_change).max() / np.abs(loss_change).max()
    assert resid < 1e-4, resid
    for rec in records:
        assert rec.val_example.shape == (7, 2) and rec.example_group.shape == (7, 4)
        for li in (0, 1):
            cols = np.flatnonzero(layers[layout.example_groups] == li)
            assert _close(rec.example_group[:, cols].sum(1), rec.example[:, li])
            assert _close(rec.val_example_group[:, cols].sum(1), rec.val_example[:, li])


def test_a_resumed_tracker_gives_the_uninterrupted_group_and_validation_values(tmp_path,
                                                                               captured):
    from tests.compute.test_tracker_resume import _checkpoint, _kill, _setup, _train

    groups = {"rows": [("0.weight", slice(0, 4)), ("0.bias", slice(0, 4))]}

    def tracker(model, opt, x, y, out, **kw):
        return LCATracker(model, x, y, out=out, optimizer=opt, lca_rows=3, val_inputs=x[:20],
                          val_targets=y[:20], chunk_size=25, per_example=11, groups=groups,
                          **kw)

    model, opt, x, y = _setup()
    with tracker(model, opt, x, y, tmp_path / "ref.h5") as lca:
        _train(model, opt, lca, x, y, range(7))
    ref = list(captured["records"])
    captured["records"].clear()
    out = tmp_path / "run.h5"
    model, opt, x, y = _setup()
    lca = tracker(model, opt, x, y, out, resume=True)
    lca.start()
    _train(model, opt, lca, x, y, range(4))
    ckpt = _checkpoint(model, opt, lca)
    _train(model, opt, lca, x, y, range(4, 6))  # written after the checkpoint: dropped
    lca.writer.flush()
    _kill(lca)
    captured["records"].clear()
    model, opt, x, y = _setup()
    lca = tracker(model, opt, x, y, out, resume=True)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    lca.load_state_dict(ckpt["lca"])
    with lca:
        _train(model, opt, lca, x, y, range(lca.iteration, 7))
    again = captured["records"]
    assert len(again) == 3  # iterations 4, 5, 6
    for got, want in zip(again, ref[4:], strict=True):
        for key in ("example", "example_group", "val_example", "val_example_group",
                    "val_example_loss_before", "val_example_loss_after"):
            assert getattr(want, key) is not None, key
            assert np.array_equal(getattr(got, key), getattr(want, key)), key


def test_a_fixed_subset_and_full_loss_leave_the_validation_examples_whole(tmp_path, captured):
    """``lca_data`` allocates a subset of the training set; the validation set stays whole."""
    run_lca(RunConfig(**{**GROK, "iters": 3}, per_example="all", lca_data="10",
                      full_loss_every=2), tmp_path / "s.h5", progress=False)
    (layout,), records = captured["layout"], captured["records"]
    assert len(layout.examples.index) == layout.config["per_example_of"] == 10
    n_val = layout.config["per_example_val_of"]
    assert len(layout.val_examples.index) == n_val > 10
    for rec in records:
        assert rec.example.shape[0] == 10 and rec.val_example.shape[0] == n_val
        assert _close(rec.val_example.sum(0), rec.lca_val_layer)
        assert _close(rec.example.sum(0), rec.lca_layer)
