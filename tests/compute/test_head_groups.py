"""Named groups for any model (issue 23.3): the attention-head groups of nn.MultiheadAttention,
Hugging Face BERT (query/key/value Linear + output.dense) and GPT-2 (fused c_attn Conv1D +
c_proj) cover exactly the hand-indexed slices of each weight and partition the parameters;
a user's spec is checked with errors that name the group and parameter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compute.lca.params import load_flat_params, param_table
from compute.nets.groups import (
    attention_head_groups,
    build_groups,
    group_index,
    resolve_groups,
)

transformers = pytest.importorskip("transformers")

D, HEADS = 8, 2
DH = D // HEADS


class MHANet(nn.Module):
    """An nn.MultiheadAttention with k/v biases, then a classifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, D)
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True, add_bias_kv=True)
        self.head = nn.Linear(D, 3)

    def forward(self, x):
        h = self.embed(x)
        return self.head(self.attn(h, h, h, need_weights=False)[0][:, -1])


def bert():
    cfg = transformers.BertConfig(vocab_size=12, hidden_size=D, num_hidden_layers=2,
                                  num_attention_heads=HEADS, intermediate_size=16,
                                  max_position_embeddings=8, num_labels=3,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg)


def gpt2():
    cfg = transformers.GPT2Config(vocab_size=12, n_embd=D, n_layer=2, n_head=HEADS,
                                  n_positions=8, resid_pdrop=0.0, embd_pdrop=0.0,
                                  attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2Model(cfg)


def indexed(model: nn.Module) -> dict[str, np.ndarray]:
    """Group name -> its flat indices, with every parameter overwritten by its flat indices
    (so a hand-indexed slice of a weight reads the indices it must cover)."""
    table = param_table(model)
    groups = resolve_groups(attention_head_groups(model), table)
    index = group_index(groups, table.n_params)  # raises unless a partition
    assert np.bincount(index, minlength=len(groups)).sum() == table.n_params
    load_flat_params(model, torch.arange(table.n_params, dtype=torch.float64))
    return {name: np.concatenate([np.arange(s, e) for s, e in ranges])
            for name, ranges in groups}


def cols(*tensors) -> np.ndarray:
    return np.sort(np.concatenate([t.detach().reshape(-1).numpy() for t in tensors])).astype(
        np.int64)


def test_multihead_attention_heads_are_rows_of_in_proj_and_columns_of_out_proj():
    model = MHANet().double()
    got = indexed(model)
    m = model.attn
    for h in range(HEADS):
        rows = slice(h * DH, (h + 1) * DH)
        for part, name in enumerate("qkv"):
            fused = slice(part * D + h * DH, part * D + (h + 1) * DH)
            want = [m.in_proj_weight[fused], m.in_proj_bias[fused]]
            if name != "q":
                want.append(getattr(m, f"bias_{name}")[0, 0, rows])
            np.testing.assert_array_equal(got[f"attn.{name}.head{h}"], cols(*want))
        np.testing.assert_array_equal(got[f"attn.out_proj.head{h}"],
                                      cols(m.out_proj.weight[:, rows]))
    np.testing.assert_array_equal(got["attn.out_proj.rest"], cols(m.out_proj.bias))
    assert "embed" in got and "head" in got


def test_multihead_attention_with_other_kdim_uses_the_separate_projections():
    m = nn.MultiheadAttention(D, HEADS, kdim=4, vdim=6).double()
    got = indexed(m)
    np.testing.assert_array_equal(got["k.head1"], cols(m.k_proj_weight[DH:], m.in_proj_bias[
        D + DH:2 * D]))


def test_bert_heads_are_output_rows_of_query_key_value_and_input_columns_of_output_dense():
    model = bert().double()
    got = indexed(model)
    for layer in range(2):
        block = model.bert.encoder.layer[layer].attention
        prefix = f"bert.encoder.layer.{layer}.attention"
        for h in range(HEADS):
            rows = slice(h * DH, (h + 1) * DH)
            for part in ("query", "key", "value"):
                lin = getattr(block.self, part)
                np.testing.assert_array_equal(got[f"{prefix}.self.{part}.head{h}"],
                                              cols(lin.weight[rows], lin.bias[rows]))
            np.testing.assert_array_equal(got[f"{prefix}.output.dense.head{h}"],
                                          cols(block.output.dense.weight[:, rows]))
        # the bias stays in output.dense's layer; the LayerNorm is a layer (and group) of its own
        np.testing.assert_array_equal(got[f"{prefix}.output.dense.rest"],
                                      cols(block.output.dense.bias))
        np.testing.assert_array_equal(got[f"{prefix}.output.LayerNorm"], cols(
            block.output.LayerNorm.weight, block.output.LayerNorm.bias))


def test_gpt2_heads_are_columns_of_fused_c_attn_and_rows_of_c_proj():
    model = gpt2().double()
    got = indexed(model)
    for layer in range(2):
        attn = model.h[layer].attn
        assert attn.c_attn.weight.shape == (D, 3 * D)  # Conv1D: x @ W
        prefix = f"h.{layer}.attn"
        for h in range(HEADS):
            for part, name in enumerate("qkv"):
                c = slice(part * D + h * DH, part * D + (h + 1) * DH)
                np.testing.assert_array_equal(got[f"{prefix}.c_attn.{name}.head{h}"],
                                              cols(attn.c_attn.weight[:, c], attn.c_attn.bias[c]))
            np.testing.assert_array_equal(got[f"{prefix}.c_proj.head{h}"],
                                          cols(attn.c_proj.weight[h * DH:(h + 1) * DH]))


def test_a_user_spec_in_every_selection_form_and_the_fill():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    table = param_table(model)  # 0.weight (6, 4) at 0, 0.bias at 24, 2.weight (2, 6) at 30
    groups = dict(resolve_groups({
        "rows": [("0.weight", slice(0, 2)), ("0.bias", slice(0, 2))],
        "cols": [("0.weight", (slice(2, None), slice(1, 3)))],  # rows 2..5, columns 1, 2
        "flat": [("2.weight", range(3, 7))],
        "last": [("2.bias", -1)],
        "tail": [("0.bias", (slice(-4, None),))],
    }, table))
    assert groups["rows"] == [(0, 8), (24, 26)]
    assert groups["cols"] == [(9, 11), (13, 15), (17, 19), (21, 23)]
    assert groups["flat"] == [(33, 37)]
    assert groups["last"] == [(43, 44)]
    assert groups["tail"] == [(26, 30)]
    # what the groups leave of a layer they touch: "<layer>.rest"; untouched layers: the layer
    assert groups["0.rest"] == [(8, 9), (11, 13), (15, 17), (19, 21), (23, 24)]
    assert groups["2.rest"] == [(30, 33), (37, 43)]
    group_index(list(groups.items()), table.n_params)  # a partition


@pytest.mark.parametrize("spec, error, message", [
    ({"a": [("0.wieght", None)]}, ValueError, "no parameter '0.wieght'; did you mean '0.weight'"),
    ({"a": [("0.weight", slice(0, 7))]}, ValueError, r"slice\(0, 7, None\) on axis 0 .*0\.\.6"),
    ({"a": [("0.weight", (0, 4))]}, ValueError, "index 4 on axis 1 is outside 0..3"),
    ({"a": [("0.weight", (0, 0, 0))]}, ValueError, r"3 indices for a tensor of shape \(6, 4\)"),
    ({"a": [("0.weight", range(20, 30))]}, ValueError, "not a range of step 1 inside its 24"),
    ({"a": [("0.weight", slice(0, 4, 2))]}, ValueError, "only step 1"),
    ({"a": [("0.weight", slice(2, 2))]}, ValueError, "empty"),
    ({"a": [("0.weight", slice(0, 3))], "b": [("0.weight", slice(2, 4))]}, ValueError,
     r"groups 'a' and 'b' overlap: parameter '0.weight', flat elements \[8, 12\)"),
    ({"a": [("0.weight", 1), ("0.weight", slice(0, 2))]}, ValueError, "'a' selects some of"),
    ({"a": [("0.weight", None), ("2.weight", None)]}, ValueError, "spans layers 0, 2"),
    ({"a": []}, ValueError, "selects no parameters"),
    ({"2": [("0.bias", None)]}, ValueError, "'2' is also the name"),
    ({"a": [("0.weight", "rows")]}, TypeError, "got 'rows'"),
    ({"a": ("0.weight", None)}, TypeError, "list of"),
    ({"a": [("0.weight",)]}, TypeError, "pairs"),
    ([("0.weight", None)], TypeError, "must be a dict"),
])
def test_a_bad_user_spec_is_refused_with_a_clear_error(spec, error, message):
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    with pytest.raises(error, match=message):
        build_groups(model, param_table(model), spec)


def test_frozen_parameters_are_refused_by_a_spec_and_skipped_by_heads():
    model = MHANet().double()
    model.attn.in_proj_bias.requires_grad_(False)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    table = param_table(model, names)
    with pytest.raises(ValueError, match="'attn.in_proj_bias' is not tracked"):
        build_groups(model, table, {"a": [("attn.in_proj_bias", None)]})
    groups = build_groups(model, table, "heads")
    group_index(groups, table.n_params)
    assert len(dict(groups)["attn.q.head0"]) == 1  # the weight's rows only
    with pytest.raises(ValueError, match="only named choice is 'heads'"):
        build_groups(model, table, "head")
    plain = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="no attention layer found in Linear"):
        build_groups(plain, param_table(plain), "heads")
