"""LCATracker(groups=...) (issue 23.3): a user's Hugging Face BERT / GPT-2 and
nn.MultiheadAttention models get ``params/groups`` and ``lca_group`` per iteration, whose sums
refine ``lca_layer`` exactly (float64), and the run page's "by: head / part" and head zoom
work for them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute import LCATracker
from compute.nets.groups import attention_head_groups
from lcaviz.bundle import RunBundle
from tests.compute.test_head_groups import DH, HEADS, D, MHANet, bert, gpt2

N, L, STEPS, C = 24, 5, 3, 3


class Logits(nn.Module):
    """A Hugging Face model as ``token ids -> logits`` (a classifier on the last position for a
    base model without one)."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf
        self.cls = None if hasattr(hf, "classifier") else nn.Linear(D, C)

    def forward(self, x):
        out = self.hf(input_ids=x)
        return out.logits if self.cls is None else self.cls(out.last_hidden_state[:, -1])


def data(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 10, (N, L), generator=g)
    return x, (x[:, 0] + x[:, -1]) % C


def track(model: nn.Module, out, groups, val: bool = True):
    """A plain Adam loop over minibatches with the tracker beside it."""
    model = model.double()
    x, y = data(0)
    xv, yv = data(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with LCATracker(model, x, y, out=out, groups=groups, lca_rows=1, optimizer=opt,
                    val_inputs=xv if val else None, val_targets=yv if val else None) as lca:
        for t in range(STEPS):
            idx = torch.arange(t * 8, t * 8 + 8)
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            lca.step(minibatch_loss=loss.item())
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracked")
    return {"bert": track(Logits(bert()), d / "bert.h5", "heads"),
            "gpt2": track(Logits(gpt2()), d / "gpt2.h5", attention_head_groups, val=False),
            "mha": track(MHANet(), d / "mha.h5", {
                "attn.v.head1": [("attn.in_proj_weight", slice(2 * D + DH, 3 * D)),
                                 ("attn.in_proj_bias", range(2 * D + DH, 3 * D))],
                "head.row0": [("head.weight", 0), ("head.bias", 0)]})}


@pytest.mark.parametrize("name", ["bert", "gpt2", "mha"])
def test_group_sums_refine_the_layer_sums_and_the_rows(runs, name):
    with RunBundle.open(runs[name]) as b:
        assert b.status == "complete" and b.has_groups
        names, layer_of = b.group_names, b.group_layer
        cols = np.concatenate([b.group_columns(g) for g in range(len(names))])
        assert np.array_equal(np.sort(cols), np.arange(b.n_params))  # a partition
        pairs = [(b.lca_group(), b.lca_layer())]
        if b.lca_val_group() is not None:
            pairs.append((b.lca_val_group(), b.lca_val_layer()))
        for lca_g, lca_l in pairs:
            assert lca_g.shape == (STEPS, len(names)) and np.abs(lca_g).sum() > 0
            by_layer = np.zeros_like(lca_l)
            np.add.at(by_layer.T, layer_of, lca_g.T)
            np.testing.assert_allclose(by_layer, lca_l, rtol=0, atol=1e-13)  # float64
        rows = b.rows(0, STEPS).astype(np.float64)  # float32 storage
        for g in range(len(names)):
            np.testing.assert_allclose(rows[:, b.group_columns(g)].sum(1), b.lca_group()[:, g],
                                       rtol=1e-5, atol=1e-9)


def test_heads_of_bert_and_gpt2_and_a_user_dict_are_the_groups(runs):
    with RunBundle.open(runs["bert"]) as b:
        names = b.group_names
        prefix = "hf.bert.encoder.layer.0.attention"
        for h in range(HEADS):
            for part in ("self.query", "self.key", "self.value", "output.dense"):
                assert f"{prefix}.{part}.head{h}" in names
        assert b.config["groups"] == "heads" and f"{prefix}.output.dense.rest" in names
    with RunBundle.open(runs["gpt2"]) as b:
        assert b.config["groups"] == "attention_head_groups"
        assert "hf.h.1.attn.c_attn.v.head1" in b.group_names and "cls" in b.group_names
    with RunBundle.open(runs["mha"]) as b:
        assert b.group_names == ["embed", "attn.rest", "attn.v.head1", "attn.out_proj",
                                 "head.row0", "head.rest"]
        assert b.config["groups"] == "dict"
        wb = b.params.set_index("name").loc["attn.in_proj_weight", "offset"]
        v1 = b.group_columns("attn.v.head1")
        assert v1[:DH * D].tolist() == list(range(wb + (2 * D + DH) * D, wb + 3 * D * D))


def test_the_run_page_shows_heads_of_a_tracked_hf_model(runs):
    from lcaviz.app import create_app, get_state
    from lcaviz.app.pages import run_groups, run_panels, run_views
    from lcaviz.app.queries import run_meta

    state = get_state(create_app(runs["bert"].parent))
    for name in ("bert", "gpt2"):
        rid = state.run_id(runs[name])
        b, _ = state.open(rid)
        meta = run_meta(b)
        assert not run_panels.by_options(meta)[1]["disabled"]  # "by: head / part" enabled
        bars = run_views.layer_bars(state, run_views.Controls(run_id=rid, bars_by="group"))
        assert list(bars.data[0].x) == b.group_names and "per group" in bars.layout.title.text
        np.testing.assert_allclose(bars.data[0].y, b.lca_group().sum(0), rtol=0, atol=1e-15)
    # the heatmap's head menu on GPT-2's fused c_attn (d, 3d): a head of k is a d × dh block
    layer = b.layer_names.index("hf.h.0.attn.c_attn")
    opts = run_groups.group_options(state, rid, meta, layer)
    assert [o["label"] for o in opts[1:]] == [f"{p}.head{h}" for p in "qkv" for h in range(HEADS)]
    assert run_groups.group_zoom(state, rid, layer, "hf.h.0.attn.c_attn.k.head1") == \
        [0, D, D + DH, D + 2 * DH]
    proj = b.layer_names.index("hf.h.0.attn.c_proj")  # c_proj (d, d): a head is rows
    assert run_groups.group_zoom(state, rid, proj, "hf.h.0.attn.c_proj.head1") == [DH, D, 0, D]


def test_a_bad_spec_fails_before_the_bundle_is_made(tmp_path):
    out = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="no parameter 'attn.in_proj'"):
        track(MHANet(), out, {"x": [("attn.in_proj", None)]})
    assert not out.exists()
