"""The grokking task: modular-addition splits, the transformer, its component groups, AdamW,
exact LCA on it in float64, and lca-run end to end."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from compute.api import compute_lca
from compute.data.datasets import load_splits
from compute.data.modular import all_pairs, make_modular_addition, split_indices
from compute.lca.integrator import layer_sums
from compute.lca.params import flat_params, param_table
from compute.nets.groups import component_groups, group_index, group_layers, group_sums
from compute.nets.models import build_model
from compute.nets.transformer import Transformer
from compute.run.config import ConfigError, RunConfig
from compute.run.optim import build_optimizer

# ----------------------------------------------------------------------------- the split


@pytest.mark.parametrize("p, frac", [(7, 0.3), (11, 0.5), (53, 0.4)])
def test_split_is_deterministic_disjoint_and_complete(p, frac):
    tr, va = split_indices(p, frac, seed=3)
    tr2, va2 = split_indices(p, frac, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(tr) == round(frac * p * p) and len(tr) + len(va) == p * p
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(p * p))  # partition
    other, _ = split_indices(p, frac, seed=4)
    assert not np.array_equal(np.sort(tr), np.sort(other))  # the seed matters
    bigger, _ = split_indices(p, frac + 0.2, seed=3)
    assert set(tr) <= set(bigger)  # a larger fraction only adds pairs


def test_examples_are_the_sums_mod_p():
    s = make_modular_addition(7, 0.3, seed=0)
    for d in (s.train, s.val):
        a, b, eq = d.x.T
        assert d.x.dtype == torch.int64 and d.x.shape[1] == 3
        assert torch.equal(eq, torch.full_like(eq, 7))  # "=" is token p
        assert torch.equal(d.y, (a + b) % 7)
    assert s.test is None and s.train.n_classes == 7 and s.train.input_shape == (3,)
    pairs = {tuple(r) for r in torch.cat([s.train.x, s.val.x])[:, :2].tolist()}
    assert len(pairs) == 49
    x, y = all_pairs(7)
    assert x.shape == (49, 3) and y[7 * 3 + 5] == (3 + 5) % 7


def test_load_splits_registers_the_task():
    s = load_splits("modular-addition", modulus=11, train_fraction=0.5, seed=2)
    ref = make_modular_addition(11, 0.5, seed=2)
    assert torch.equal(s.train.x, ref.train.x) and torch.equal(s.val.y, ref.val.y)
    small = load_splits("modular-addition", modulus=11, train_fraction=0.5, seed=2,
                        train_size=10, val_size=5)  # prefixes of the random orders
    assert torch.equal(small.train.x, ref.train.x[:10]) and len(small.val) == 5
    with pytest.raises(ValueError, match="train_fraction"):
        load_splits("modular-addition", modulus=5, train_fraction=1.0)
    with pytest.raises(ValueError, match="only apply to modular-addition"):
        load_splits("synthetic", modulus=5)
    with pytest.raises(ValueError, match="modular-addition"):
        load_splits("nonsense")


def test_config_fields():
    cfg = RunConfig(net="transformer", dataset="modular-addition", optimizer="adamw")
    assert cfg.validate().to_dict()["modulus"] == cfg.modulus
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(modulus=1), dict(train_fraction=0.0), dict(train_fraction=1.5)):
        with pytest.raises(ConfigError, match="modulus|train-fraction"):
            RunConfig(dataset="modular-addition", **bad).validate()
    with pytest.raises(ConfigError, match="only apply"):
        RunConfig(dataset="synthetic", modulus=cfg.modulus + 2).validate()


# ----------------------------------------------------------------------------- the model


def _tiny(p=7, layernorm=False, n_layers=1, seed=0, dtype=torch.float64, activation="relu"):
    return build_model("transformer", (3,), p, seed=seed, d_model=16, n_heads=4, d_mlp=32,
                       n_layers=n_layers, layernorm=layernorm, activation=activation).to(dtype)


def _reference_forward(m: Transformer, x: torch.Tensor) -> torch.Tensor:
    """Every position through every block, one head at a time: the textbook computation."""
    h = m.embed.weight[x.long()] + m.pos_embed.weight[: x.shape[1]]
    S = x.shape[1]
    future = torch.ones(S, S, dtype=torch.bool).triu(1)
    for b in m.blocks:
        a, y = b.attn, b.ln1(h)
        out = 0
        for k in range(a.n_heads):
            q, key, v = y @ a.q.weight[k], y @ a.k.weight[k], y @ a.v.weight[k]
            scores = (q @ key.transpose(-1, -2) / math.sqrt(a.d_head)).masked_fill(
                future, float("-inf"))
            out = out + (scores.softmax(-1) @ v) @ a.o.weight[k]
        h = h + out
        h = h + b.mlp(b.ln2(h))
    return m.ln_final(h[:, -1]) @ m.unembed.weight[0]


@pytest.mark.parametrize("layernorm", [False, True])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_forward_equals_the_textbook_computation(layernorm, n_layers):
    m = _tiny(layernorm=layernorm, n_layers=n_layers)
    x = make_modular_addition(7, 0.5).train.x
    out = m(x.double())  # lca-run hands token ids over as floats
    assert out.shape == (len(x), 7) and out.dtype == torch.float64
    torch.testing.assert_close(out, _reference_forward(m, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(m(x), out, rtol=0, atol=0)  # integer ids: the same


def test_build_model_is_seeded_and_checks_its_input():
    state = torch.random.get_rng_state()
    a, b, c = _tiny(seed=3), _tiny(seed=3), _tiny(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(flat_params(a), flat_params(b))
    assert not torch.equal(flat_params(a), flat_params(c))
    m = build_model("transformer", (3,), 97)  # the reference widths
    assert m.embed.weight.shape == (98, 64) and m.unembed.weight.shape == (1, 64, 97)
    assert m.blocks[0].attn.q.weight.shape == (4, 64, 16) and len(m.blocks) == 1
    assert m.blocks[0].mlp.fc_in.weight.shape == (256, 64)
    with pytest.raises(ValueError, match="sequence length"):
        build_model("transformer", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="unknown transformer options"):
        build_model("transformer", (3,), 7, width=3)
    with pytest.raises(ValueError, match="takes no options"):
        build_model("mnist_fc", (4,), 3, d_model=8)


def test_eval_and_train_mode_agree():
    m = _tiny()
    x = make_modular_addition(7, 0.5).val.x
    out = m.train()(x)
    torch.testing.assert_close(m.eval()(x), out, rtol=0, atol=0)  # no dropout anywhere


# ----------------------------------------------------------------------------- AdamW


def test_adamw_is_decoupled_and_respects_layer_overrides():
    m = _tiny(dtype=torch.float32)
    cfg = RunConfig(net="transformer", dataset="modular-addition", optimizer="adamw", lr=1e-3,
                    weight_decay=1.0, betas=(0.9, 0.98), freeze=["pos_embed"],
                    layer_lr={"blocks.0.attn": 0.5})
    opt = build_optimizer(m, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert "pos_embed" not in lrs and not m.pos_embed.weight.requires_grad
    assert lrs["blocks.0.attn.q"] == lrs["blocks.0.attn.o"] == 0.5 and lrs["embed"] == 1e-3
    assert all(g["weight_decay"] == 1.0 and g["betas"] == (0.9, 0.98) for g in opt.param_groups)
    # decoupled: with a zero gradient, one step shrinks θ by exactly (1 − lr·wd)
    before = m.unembed.weight.detach().clone()
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(m.unembed.weight.detach(), before * (1 - 1e-3 * 1.0))


# ----------------------------------------------------------------------------- groups


@pytest.mark.parametrize("layernorm", [False, True])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_groups_partition_the_parameters_and_nest_in_layers(layernorm, n_layers):
    m = _tiny(layernorm=layernorm, n_layers=n_layers)
    table = param_table(m)
    groups = component_groups(m)
    names = [n for n, _ in groups]
    assert len(set(names)) == len(names)
    idx = group_index(groups, table.n_params)  # raises unless every index is in one group
    assert np.bincount(idx, minlength=len(groups)).sum() == table.n_params
    assert (group_layers(groups, table.param_layer_index()) >= 0).all()  # each in one layer
    expected = ["embed", "pos_embed"]
    for b in range(n_layers):
        expected += [f"blocks.{b}.ln1"] if layernorm else []
        expected += [f"blocks.{b}.attn.{w}.head{h}" for w in "qkvo" for h in range(4)]
        expected += [f"blocks.{b}.ln2"] if layernorm else []
        expected += [f"blocks.{b}.mlp.fc_in", f"blocks.{b}.mlp.fc_out"]
    expected += (["ln_final"] if layernorm else []) + ["unembed"]
    assert names == expected  # flat order
    sizes = dict((n, sum(e - s for s, e in r)) for n, r in groups)
    assert sizes["blocks.0.attn.q.head0"] == 16 * 4 and sizes["blocks.0.attn.o.head3"] == 4 * 16
    assert sizes["blocks.0.mlp.fc_in"] == 16 * 32 + 32 and sizes["unembed"] == 16 * 7
    q = m.blocks[0].attn.q.weight  # head 2's group is exactly q.weight[2]
    (s, e), = dict(groups)["blocks.0.attn.q.head2"]
    torch.testing.assert_close(flat_params(m)[s:e], q[2].detach().reshape(-1))


def test_groups_of_a_model_without_heads_are_its_layers():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert component_groups(m) == [("0", [(0, 16)]), ("2", [(16, 26)])]
    with pytest.raises(ValueError, match="overlaps"):
        group_index([("a", [(0, 3)]), ("b", [(2, 5)])], 5)
    with pytest.raises(ValueError, match="in no group"):
        group_index([("a", [(0, 3)])], 5)


# ----------------------------------------------------------------------------- LCA


def _adamw_path(model, x, y, steps=4, lr=0.05, batch=None):
    import copy

    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=1.0)
    path = [flat_params(m)]
    for _ in range(steps):
        loss = nn.functional.cross_entropy(m(x[:batch]), y[:batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        path.append(flat_params(m))
    return path


@pytest.mark.parametrize("layernorm", [False, True])
def test_lca_conserves_in_float64(layernorm):
    """Exact gradients: on the smooth (GELU) variant the allocation closes to 1e-10 of ΔL.

    Simpson's rule converges like |Δθ|^5 only where the loss is smooth along the step; ReLU
    units that change sign inside a step cap it (see the next test), as on the other ReLU nets.
    """
    m = _tiny(layernorm=layernorm, activation="gelu")
    s = make_modular_addition(7, 0.5, seed=1)
    x, y = s.train.x.double(), s.train.y  # as lca-run hands them over
    path = _adamw_path(m, x, y, lr=1e-3, batch=16)
    for data in (s.train, s.val):  # the validation loss is allocated the same way
        res = compute_lca(m, data.x.double(), data.y, path, method="adaptive", tol=1e-12,
                          rtol=1e-10, max_halvings=8, per_class=False, n_classes=7)
        dL = res.loss.diff()
        assert (dL.abs() > 1e-5).all() and not res.hit_max.any()
        assert (res.residual.abs() <= 1e-10 * dL.abs()).all(), (res.residual, dL)
        torch.testing.assert_close(res.lca.sum(1), dL - res.residual, rtol=0, atol=1e-15)


@pytest.mark.parametrize("layernorm", [False, True])
def test_rk4_lca_and_groups_refine_layers(layernorm):
    """The reference (ReLU) model as lca-run allocates it: rk4 at lr 1e-3, per class."""
    m = _tiny(layernorm=layernorm)
    s = make_modular_addition(7, 0.5, seed=1)
    x, y = s.train.x.double(), s.train.y
    path = _adamw_path(m, x, y, lr=1e-3, batch=16)
    res = compute_lca(m, x, y, path, method="rk4", chunk_size=10, per_class=True, n_classes=7)
    dL = res.loss.diff()
    # measured 2.7e-3 (no LayerNorm) and 1.2e-2 (LayerNorm) of |ΔL|: ReLU kinks inside a step
    assert (res.residual.abs() <= 0.05 * dL.abs()).all(), (res.residual, dL)
    torch.testing.assert_close(res.class_lca_layer.sum(1), res.lca_layer, rtol=0, atol=1e-15)

    table = param_table(m)
    groups = component_groups(m)
    gidx = torch.as_tensor(group_index(groups, table.n_params))
    g_sums = group_sums(res.lca, gidx, len(groups))  # (T, G)
    l_sums = layer_sums(res.lca, torch.as_tensor(table.param_layer_index()), table.n_layers)
    torch.testing.assert_close(l_sums, res.lca_layer, rtol=0, atol=1e-15)
    owner = group_layers(groups, table.param_layer_index())
    for k, name in enumerate(table.layer_names):
        torch.testing.assert_close(g_sums[:, owner == k].sum(1), l_sums[:, k], rtol=0,
                                   atol=1e-15, msg=name)
    torch.testing.assert_close(g_sums.sum(1), res.lca.sum(1), rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- lca-run


def test_lca_run_end_to_end(tmp_path):
    from compute.run.cli import main as lca_run
    from lcaviz.bundle import RunBundle

    out = tmp_path / "grok.h5"
    rc = lca_run(["--net", "transformer", "--dataset", "modular-addition", "--optimizer",
                  "adamw", "--lr", "1e-3", "--weight-decay", "1.0", "--betas", "0.9", "0.98",
                  "--train-size", "60", "--val-size", "40", "--batch-size", "60",
                  "--iters", "3", "--val-lca", "--method", "rk4", "--precision", "float64",
                  "--lca-rows", "2", "--lca-layers", "blocks.0.attn.q,blocks.0.mlp.fc_in",
                  "--lca-storage", "bfloat16", "--lca-compression", "gzip", "--no-progress",
                  "--out", str(out)])
    assert rc == 0
    with RunBundle(out) as b:
        assert b.status == "complete" and b.n_iters == 3
        cfg = b.config
        assert (cfg["net"], cfg["dataset"], cfg["optimizer"]) == (
            "transformer", "modular-addition", "adamw")
        assert cfg["modulus"] == RunConfig.modulus and cfg["weight_decay"] == 1.0
        dL = np.diff(b.loss_train())
        assert np.all(np.abs(b.residual()) <= 1e-2 * np.abs(dL))  # rk4 on ReLU: ~1e-3
        assert b.loss_val() is not None and b.lca_val_layer() is not None
        assert "blocks.0.attn.q" in b.layer_names
