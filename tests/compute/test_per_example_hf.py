"""Per-example LCA on the Hugging Face models users bring (issue 24): tiny random-init GPT-2
(causal LM, Conv1D, padding + attention_mask, labels -100 on padding), BERT sequence
classification and BERT masked LM (and LLaMA for the rules), built from configs (no hub
downloads).

"An example" is a sequence; its loss ℓ_n is the HF loss's share of it (the callback's
:class:`~compute.integrations.hf.HFLoss`: a token loss's sum over the sequence's labelled tokens
divided by the fixed set's mean labelled tokens per sequence), so mean_n ℓ_n is the model's own
``loss`` on the fixed set. Checked in float64: the per-module rules and the jvp fallback (GPT-2's
Conv1D) against explicit per-sequence autograd; Σ_n E[t, n, l] = lca_layer[t, l] at every step
(integrator, 1e-9; bundle, float32 storage); the per-example conservation
Σ_{t,l} E[t, n, l] = (ℓ_n(θ_T) − ℓ_n(θ_0)) / N with the bundle's own ℓ_n, which average to the
model's own loss; and the Trainer callback end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from compute import LCATracker  # noqa: E402
from compute.integrations.hf import IGNORE, HFLogits, LCATrainerCallback, hf_loss  # noqa: E402
from compute.lca import per_example  # noqa: E402
from compute.lca.integrator import LCAIntegrator, layer_sums  # noqa: E402
from compute.lca.objective import FullDatasetObjective  # noqa: E402
from compute.lca.params import flat_params, param_table  # noqa: E402
from compute.lca.per_example import PerExampleDirectional  # noqa: E402
from lcaviz.bundle import RunBundle  # noqa: E402

VOCAB, MASK, N, T, CHUNK = 40, 39, 64, 16, 32  # ids 1..38 words, 0 pads, 39 masks
BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=48, max_position_embeddings=T)


def _padded(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (N, T) padded with 0 after lengths 4..T, and the attention mask."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(4, T + 1, (N,), generator=g)
    mask = (torch.arange(T)[None] < lens[:, None]).long()
    return torch.randint(1, MASK, (N, T), generator=g) * mask, mask


def _gpt2():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=T, bos_token_id=1,
        eos_token_id=1))
    ids, mask = _padded(1)
    return model, {"input_ids": ids, "attention_mask": mask,
                   "labels": ids.masked_fill(mask == 0, IGNORE)}


def _bert_classification():
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(num_labels=3, type_vocab_size=2, **BERT))
    ids, mask = _padded(2)
    types = (torch.arange(T)[None] >= mask.sum(1, keepdim=True) // 2).long() * mask
    return model, {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
                   "labels": torch.arange(N) % 3}


def _bert_mlm():
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(**BERT))
    ids, mask = _padded(3)
    g = torch.Generator().manual_seed(4)
    masked = (torch.rand(N, T, generator=g) < 0.3) & (mask == 1)
    masked[:, 0] = True  # every sequence has a labelled token
    return model, {"input_ids": ids.masked_fill(masked, MASK), "attention_mask": mask,
                   "labels": ids.masked_fill(~masked, IGNORE)}


def _llama():
    """LLaMA: RMSNorm has no rule (the jvp fallback), rotary positions, grouped KV heads."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=T,
        pad_token_id=0, bos_token_id=1, eos_token_id=1))
    ids, mask = _padded(5)
    return model, {"input_ids": ids, "attention_mask": mask,
                   "labels": ids.masked_fill(mask == 0, IGNORE)}


CASES = {"gpt2_lm": _gpt2, "bert_classification": _bert_classification, "bert_mlm": _bert_mlm}
MODELS = {**CASES, "llama_lm": _llama}  # the rules' check only


def _case(name: str):
    """The float64 model (dropout off), its batch, the tracker's wrapper, x, y and ℓ_n."""
    model, batch = MODELS[name]()
    model = model.double().eval()
    names = [k for k in batch if k != "labels"]
    x, y = torch.stack([batch[k] for k in names], 1), batch["labels"]
    return model, batch, HFLogits(model, names), x, y, hf_loss(model, y)


def _autograd_directional(wrapped, loss_fn, x, y, v: torch.Tensor, n: int) -> np.ndarray:
    """∇_{θ_l} ℓ_n · v_l (L,) by autograd on sequence n alone."""
    params = list(wrapped.parameters())
    g = torch.autograd.grad(loss_fn(wrapped(x[n:n + 1]), y[n:n + 1]).sum(), params)
    table = param_table(wrapped)
    flat = torch.cat([gi.reshape(-1) for gi in g])
    index = torch.as_tensor(table.param_layer_index())
    return layer_sums(flat * v, index, table.n_layers).numpy()


@pytest.mark.parametrize("name", [*MODELS, "gpt2_lm_jvp"])
def test_rules_and_fallback_equal_per_sequence_autograd(name, monkeypatch):
    jvp = name.endswith("_jvp")  # GPT-2's Conv1D without its rule: the jvp fallback
    name = name.removesuffix("_jvp")
    if jvp:
        plain = per_example.rule_for
        monkeypatch.setattr(per_example, "rule_for",
                            lambda m: None if type(m).__name__ == "Conv1D" else plain(m))
    model, _, wrapped, x, y, loss_fn = _case(name)
    obj = FullDatasetObjective(wrapped, x, y, n_classes=1, chunk_size=CHUNK, chunking="mixed",
                               loss_fn=loss_fn)
    engine = PerExampleDirectional(obj, "hooks", check=True)
    theta = torch.cat([p.detach().reshape(-1) for p in obj.params])
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(7), dtype=theta.dtype)
    losses, D = engine.evaluate(theta, v)
    handlers = dict(engine.handlers)
    engine.close()
    # the rules were exact: the sum check (float64, 1e-9) sent no layer to forward mode
    assert engine.repaired == []
    # the modules the fallback handles: GPT-2's Conv1D without its rule, LLaMA's RMSNorm
    fallback = {m for m, h in handlers.items() if h == "jvp"}
    if name == "gpt2_lm":  # Conv1D has its rule (compute.lca.per_example_rules)
        convs = {m for m in handlers if m.endswith(("c_attn", "c_fc", "c_proj"))}
        assert len(convs) == 8 and fallback == (convs if jvp else set()), handlers
    elif name == "llama_lm":
        assert fallback and all(m.endswith("norm") for m in fallback), handlers
    else:
        assert not fallback, handlers
    for n in (0, 5, N - 1):  # first and last of a chunk, and one between
        want = _autograd_directional(wrapped, loss_fn, x, y, v, n)
        np.testing.assert_allclose(D[n].numpy(), want, rtol=1e-8,
                                   atol=1e-10 * np.abs(want).max())
        with torch.no_grad():
            alone = float(loss_fn(wrapped(x[n:n + 1]), y[n:n + 1]))
        assert float(losses[n]) == pytest.approx(alone, rel=1e-12)


def _train(model, batch, steps: int = 3, lr: float = 1e-3) -> list[torch.Tensor]:
    """A few AdamW steps on minibatches of 16 (dropout off); θ after each, θ_0 first."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(9)
    path = [flat_params(model)]
    for _ in range(steps):
        b = torch.randperm(N, generator=g)[:16]
        opt.zero_grad()
        model(**{k: v[b] for k, v in batch.items()}).loss.backward()
        opt.step()
        path.append(flat_params(model))
    return path


@pytest.mark.parametrize("name, method", [*((n, "rk4") for n in CASES),
                                          *(("gpt2_lm", m) for m in
                                            ("first_order", "trapezoid", "adaptive"))])
def test_integrator_splits_each_step_among_sequences_to_1e9(name, method):
    model, batch, wrapped, x, y, loss_fn = _case(name)
    path = _train(model, batch)
    obj = FullDatasetObjective(wrapped, x, y, n_classes=1, chunk_size=CHUNK, chunking="mixed",
                               loss_fn=loss_fn)
    integ = LCAIntegrator(obj, method, per_example=torch.arange(N), tol=1e-7)
    table = param_table(wrapped)
    index = torch.as_tensor(table.param_layer_index())
    integ.start(path[0])
    splits = []
    for theta in path[1:]:
        st = integ.step(theta)
        layer = layer_sums(st.lca, index, table.n_layers)
        # Σ_n E[t, n, l] = lca_layer[t, l]: two float64 routes (hooks vs gradient · Δθ)
        np.testing.assert_allclose(st.example.sum(0).numpy(), layer.numpy(), rtol=1e-9,
                                   atol=1e-12 * float(layer.abs().max()))
        splits.append(st.splits)
    assert method != "adaptive" or max(splits) > 1  # refined: the per-example split follows
    assert integ.examples.repaired == [] and integ.examples.extra_passes == 0


@pytest.mark.parametrize("name", list(CASES))
def test_tracker_bundle_splits_the_models_own_loss_per_sequence(tmp_path, name):
    model, batch, wrapped, x, y, loss_fn = _case(name)
    out = tmp_path / "run.h5"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(9)
    own, ell = [], []  # the HF model's own loss on the fixed set, and ℓ_n, at θ_0 and θ_T
    with LCATracker(wrapped, x, y, out=out, loss_fn=loss_fn, optimizer=opt, per_example=True,
                    chunk_size=CHUNK, lca_rows="1") as lca:
        for t in range(3):
            if t == 0:
                with torch.no_grad():
                    own.append(float(model(**batch).loss))
                    ell.append(loss_fn(wrapped(x), y).double().numpy())
            b = torch.randperm(N, generator=g)[:16]
            opt.zero_grad()
            loss = model(**{k: v[b] for k, v in batch.items()}).loss
            loss.backward()
            opt.step()
            lca.step(loss.item())
        with torch.no_grad():
            own.append(float(model(**batch).loss))
            ell.append(loss_fn(wrapped(x), y).double().numpy())
    with RunBundle.open(out) as b:
        assert b.status == "complete" and b.n_examples == N
        rows, lay = b.example_lca_rows(), b.lca_layer()  # (3, N, L) float32, (3, L)
        cum, loss_rows, last = b.example_cumsum(), b.example_loss(), b.example_loss_last()
        labels, train = b.example_labels(), b.loss_train()
        residual = float(np.sum(b.residual()))
    # the tool's ℓ_n averages to the model's own loss (HF's token mean, labels shifted for
    # GPT-2), at θ_0 and θ_T; the bundle's losses are those ℓ_n (loss/train and loss_example
    # are stored as float32, loss_example_last as float64)
    # (HF's causal-LM loss casts float64 logits to float32: ForCausalLMLoss's logits.float())
    rel = 1e-7 if name == "gpt2_lm" else 1e-12
    for k in (0, 1):
        assert ell[k].mean() == pytest.approx(own[k], rel=rel)
        assert train[-k] == pytest.approx(own[k], rel=1e-7)
    np.testing.assert_allclose(loss_rows[0], ell[0], rtol=1e-7)
    np.testing.assert_allclose(last, ell[1], rtol=1e-12)
    assert labels is None if y.dim() == 2 else labels.tolist() == y.tolist()
    # Σ_n E = lca_layer at every iteration (float32 rows: ~1e-7 of the largest share)
    np.testing.assert_allclose(rows.sum(1), lay, rtol=0,
                               atol=2e-7 * np.abs(rows).sum(1).max())
    # per-example conservation: Σ_{t,l} E[t, n, l] = (ℓ_n(θ_T) − ℓ_n(θ_0)) / N up to the
    # quadrature residual, whose sum over n is the run's (rk4, small AdamW steps)
    change = (ell[1] - ell[0]) / N
    gap = change - cum.sum(1)
    assert gap.sum() == pytest.approx(residual, rel=1e-6, abs=1e-15)
    assert np.abs(gap).max() <= 1e-3 * np.abs(change).max(), np.abs(gap).max()


@pytest.mark.parametrize("name", ["gpt2_lm", "bert_mlm"])
def test_trainer_callback_records_per_sequence_values(tmp_path, name):
    model, batch = CASES[name]()  # float32, as the Trainer trains it
    data = [{k: v[i].tolist() if v.dim() == 2 else int(v[i]) for k, v in batch.items()}
            for i in range(N)]

    def collate(items):
        return {k: torch.tensor([it[k] for it in items]) for k in items[0]}

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=2, per_device_train_batch_size=16,
        learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True, logging_steps=1)
    cb = LCATrainerCallback(data, collator=collate, out=tmp_path / "hf.h5", chunk_size=CHUNK,
                            per_example=True, lca_rows="1")
    start = [p.detach().clone() for p in model.parameters()]
    transformers.Trainer(model=model, args=args, train_dataset=data, data_collator=collate,
                         callbacks=[cb]).train()
    with RunBundle.open(tmp_path / "hf.h5") as b:
        assert b.status == "complete" and b.n_examples == N and b.example_labels() is None
        rows, lay, loss0 = b.example_lca_rows(), b.lca_layer(), b.example_loss()[0]
        train = b.loss_train()
    np.testing.assert_allclose(rows.sum(1), lay, rtol=0, atol=1e-6 * np.abs(rows).sum(1).max())
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
        model.eval()
        own0 = float(model(**batch).loss)
    # float32 model: ℓ_n's mean is the model's own loss at θ_0 to float32 rounding
    assert loss0.mean() == pytest.approx(own0, rel=1e-5)
    assert train[0] == pytest.approx(own0, rel=1e-5)


def test_a_forward_mode_repair_next_to_a_tied_padded_embedding():
    """BERT MLM ties its padded word embedding to the decoder: forward mode cannot split that
    weight, but a repair of another layer (what the sum check does for a use no hook saw)
    must still run, and give the hooks' values."""
    from compute.lca.per_example_tap import ExampleTap

    model, _, wrapped, x, y, loss_fn = _case("bert_mlm")
    obj = FullDatasetObjective(wrapped, x, y, n_classes=1, chunk_size=CHUNK, chunking="mixed",
                               loss_fn=loss_fn)
    theta = torch.cat([p.detach().reshape(-1) for p in obj.params])
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(3), dtype=theta.dtype)
    tap = ExampleTap(obj, torch.arange(N))
    tap.direction(v)
    names = tap.layer_names
    layers = [names.index("bert.encoder.layer.0.attention.self.query"),
              names.index("cls.predictions.transform.dense")]
    repaired = tap._extra(theta, layers=layers)[:, layers]
    tap.close()
    engine = PerExampleDirectional(obj, "hooks", check=True)
    _, D = engine.evaluate(theta, v)
    tol = dict(rtol=1e-9, atol=1e-12 * float(D[:, layers].abs().max()))
    np.testing.assert_allclose(repaired.numpy() * N, D[:, layers].numpy(), **tol)
    # the standalone engine's repair (its sum check on a chunk whose shares went missing)
    x0, y0 = obj.x[:CHUNK], obj.y[:CHUNK]
    acc = D[:CHUNK].clone()
    acc[:, layers] = 0.0
    grads = dict(zip(obj.params, torch.autograd.grad(
        loss_fn(obj.model(x0), y0).sum(), obj.params), strict=True))
    engine._check(acc, grads, x0, y0, engine._directions(v))
    engine.close()
    assert sorted(engine.repaired) == sorted(names[k] for k in layers)
    np.testing.assert_allclose(acc[:, layers].numpy(), D[:CHUNK, layers].numpy(), **tol)
