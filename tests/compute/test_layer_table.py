"""The layer table (issue 22, item 4, and the wrapper names): a layer is a module that owns
parameters; the only fold is a BatchNorm right after the conv/linear it normalises, in the same
parent; wrappers' prefixes (``module.``, ``_orig_mod.``, ``hf.``) are not part of the names."""

import pytest
import torch
from torch import nn

from compute.lca.params import network_name, param_table


def _owner(name: str) -> str:
    return name.rpartition(".")[0] or "root"


def _each_parameter_in_its_own_module(table) -> None:
    """No fold: every parameter's layer is the module that owns it."""
    for name, li in zip(table.names, table.layer, strict=True):
        assert table.layer_names[li] == _owner(name), name


def test_gpt2_norms_are_their_own_layers():
    transformers = pytest.importorskip("transformers")
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=30, n_embd=8, n_layer=2, n_head=2, n_positions=8, bos_token_id=1,
        eos_token_id=1))
    table = param_table(model)
    block = ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"]
    assert table.layer_names == [f"transformer.{n}" for n in [
        "wte", "wpe", *[f"h.{i}.{m}" for i in range(2) for m in block], "ln_f"]]
    _each_parameter_in_its_own_module(table)  # lm_head is tied to wte: no layer of its own
    assert table.n_params == sum(p.numel() for p in model.parameters())


def test_bert_embedding_norm_is_its_own_layer():
    transformers = pytest.importorskip("transformers")
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=12, max_position_embeddings=8, num_labels=3))
    table = param_table(model)
    assert table.layer_names[:4] == [f"bert.embeddings.{n}" for n in [
        "word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"]]
    assert "bert.encoder.layer.0.attention.output.LayerNorm" in table.layer_names
    _each_parameter_in_its_own_module(table)


def test_pre_norm_transformer_norms_are_their_own_layers():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, norm_first=True)
    model = nn.Sequential(nn.Embedding(10, 8),
                          nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False),
                          nn.LayerNorm(8), nn.Linear(8, 3))
    table = param_table(model)
    # norm1 feeds the attention of its own block, not linear2 registered before it
    assert "1.layers.0.norm1" in table.layer_names and "1.layers.1.norm2" in table.layer_names
    assert "2" in table.layer_names  # the final LayerNorm, not folded into layers.1.linear2
    _each_parameter_in_its_own_module(table)


class _PreActBlock(nn.Module):
    """BN → ReLU → conv twice: bn1 normalises the block's input, bn2 the output of conv1."""

    def __init__(self, c: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        out = self.conv1(torch.relu(self.bn1(x)))
        return x + self.conv2(torch.relu(self.bn2(out)))


def test_batchnorm_folds_only_into_the_conv_it_follows():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          _PreActBlock(4), _PreActBlock(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 1, 6, 6))  # materialise the lazy linear
    table = param_table(model)
    assert table.layer_names == ["0", "3.bn1", "3.conv1", "3.conv2", "4.bn1", "4.conv1",
                                 "4.conv2", "6"]
    by_name = dict(zip(table.names, table.layer, strict=True))
    assert table.layer_names[by_name["1.weight"]] == "0"  # conv + its BatchNorm, the paper's
    assert table.layer_names[by_name["3.bn2.bias"]] == "3.conv1"


def test_wrapper_prefixes_are_not_part_of_the_names():
    transformers = pytest.importorskip("transformers")
    from compute.integrations.hf import HFLogits

    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    plain = param_table(net)
    for wrapped, name in [(nn.DataParallel(net), "Sequential"),
                          (torch.compile(net), "Sequential"),
                          (nn.DataParallel(torch.compile(net)), "Sequential")]:
        table = param_table(wrapped)
        assert (table.names, table.layer_names) == (plain.names, plain.layer_names)
        assert network_name(wrapped) == name
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=12, max_position_embeddings=8, num_labels=3))
    table = param_table(HFLogits(bert))
    assert table.names == [n for n, _ in bert.named_parameters()]
    assert table.layer_names == param_table(bert).layer_names
    assert network_name(HFLogits(bert)) == "BertForSequenceClassification"
    trainable = [n for n, _ in HFLogits(bert).named_parameters()][2:]  # "hf." names select
    assert param_table(HFLogits(bert), trainable).names == table.names[2:]
