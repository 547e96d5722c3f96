"""The Hugging Face callback allocates the loss the model trains on (issue 22, items 1 and 2):
the bundle's loss at θ_0 and θ_T is the model's own ``loss`` on the fixed set as one batch, for
sequence classification (with token_type_ids; also regression and multi-label heads), masked
LM and causal LM; every input the collator produces reaches the model; ``loss/minibatch`` is
the trainer's logged loss.
Tiny random-init models built from configs, two or three optimizer steps on the CPU."""

import copy

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from compute.integrations.hf import (  # noqa: E402
    HFLogits,
    LCATrainerCallback,
    collate_fixed_set,
    is_causal_lm,
)
from lcaviz.bundle import RunBundle  # noqa: E402

VOCAB, MASK = 30, 29  # ids 1..28 are words, 0 pads, 29 masks
SMALL = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
             max_position_embeddings=16)


def _tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    vocab = {"[PAD]": 0, **{f"w{i}": i for i in range(1, MASK)}, "[MASK]": MASK}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="[PAD]")), pad_token="[PAD]",
        mask_token="[MASK]")


def _sequences(n: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, MASK, (int(k),), generator=g).tolist()
            for k in torch.randint(3, 9, (n,), generator=g)]  # lengths 3..8: padding


def _bert_classification():
    """Sentence pairs: token_type_ids 0 then 1, padded by the collator."""
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(vocab_size=VOCAB, num_labels=3, type_vocab_size=2, **SMALL))
    with torch.no_grad():  # token types that matter, so that leaving them out shows
        model.bert.embeddings.token_type_embeddings.weight.normal_(0.0, 1.0)
    data = []
    for i, ids in enumerate(_sequences(32, 1)):
        cut = max(1, len(ids) // 2)
        data.append({"input_ids": ids, "token_type_ids": [0] * cut + [1] * (len(ids) - cut),
                     "labels": i % 3})
    return model, data, transformers.DataCollatorWithPadding(_tokenizer())


def _bert_float_labels(num_labels: int):
    """Regression (one float label) or multi-label (C floats in {0, 1}) heads."""
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(vocab_size=VOCAB, num_labels=num_labels, **SMALL))
    g = torch.Generator().manual_seed(5)
    labels = (torch.randn(32, generator=g) if num_labels == 1 else
              (torch.rand(32, num_labels, generator=g) < 0.5).float())
    data = [{"input_ids": ids, "labels": lab.tolist()}
            for ids, lab in zip(_sequences(32, 6), labels, strict=True)]
    return model, data, transformers.DataCollatorWithPadding(_tokenizer())


def _bert_mlm():
    """Masked LM with the masks drawn once (so the test and the callback collate one batch);
    unmasked tokens are labelled -100, and sequences hold 1..3 labelled tokens."""
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=VOCAB, **SMALL))
    g = torch.Generator().manual_seed(2)
    data = []
    for ids in _sequences(32, 3):
        masked = torch.rand(len(ids), generator=g) < 0.3
        masked[int(torch.randint(0, len(ids), (1,), generator=g))] = True
        data.append({"input_ids": [MASK if m else t for t, m in zip(ids, masked, strict=True)],
                     "labels": [t if m else -100 for t, m in zip(ids, masked, strict=True)]})
    return model, data, transformers.DataCollatorForTokenClassification(_tokenizer())


def _gpt2_lm():
    """Causal LM: labels are the inputs (padding -100); the loss predicts token t + 1."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=16, bos_token_id=1,
        eos_token_id=1))
    data = [{"input_ids": ids} for ids in _sequences(32, 4)]
    return model, data, transformers.DataCollatorForLanguageModeling(_tokenizer(), mlm=False)


CASES = {"bert_classification": _bert_classification, "bert_mlm": _bert_mlm,
         "gpt2_lm": _gpt2_lm, "bert_regression": lambda: _bert_float_labels(1),
         "bert_multi_label": lambda: _bert_float_labels(3)}


def _own_loss(model, batch) -> float:
    model.eval()  # the allocated loss has dropout off
    with torch.no_grad():
        return float(model(**batch).loss)


def _train(tmp_path, model, data, collator, steps=3, **cb):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=steps, per_device_train_batch_size=8,
        learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True, logging_steps=1)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, data_collator=collator,
        callbacks=[LCATrainerCallback(data, collator=collator, out=tmp_path / "hf.h5",
                                      chunk_size=16, **cb)])
    trainer.train()
    return trainer


@pytest.mark.parametrize("case", list(CASES))
def test_the_allocated_loss_is_the_models_own_loss(tmp_path, case):
    model, data, collator = CASES[case]()
    start = copy.deepcopy(model)
    trainer = _train(tmp_path, model, data, collator)
    batch = collator(data)
    with RunBundle.open(tmp_path / "hf.h5") as b:
        status, loss, minibatch, config = (b.status, b.loss_train(), b.loss_minibatch(),
                                           b.config)
    assert status == "complete" and len(loss) == 4
    own = [_own_loss(start, batch), _own_loss(model, batch)]
    assert own[0] != own[1]  # training moved it: θ_T's check is not θ_0's again
    # float32 model, float64 sums of 2 chunks: equal to float32 rounding
    np.testing.assert_allclose(loss[[0, -1]], own, rtol=1e-6)  # seen: <= 1.1e-7
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 3 and np.isfinite(minibatch).all()
    np.testing.assert_allclose(minibatch, logged, rtol=1e-12)  # the trainer's logged loss
    assert config["net"] == type(model).__name__
    assert all(not n.startswith("hf.") for n in config["parameters"])


def test_the_wrapper_passes_every_input_the_collator_produces():
    model, data, collator = _bert_classification()
    model.eval()
    x, y, names = collate_fixed_set(data, collator)
    assert names == ["input_ids", "token_type_ids", "attention_mask"]
    batch = collator(data)
    assert batch["token_type_ids"].any()  # the pair's second half is type 1
    with torch.no_grad():
        got, want = HFLogits(model, names)(x), model(**batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(y, batch["labels"])


def test_logged_every_second_step_the_others_are_nan(tmp_path):
    model, data, collator = _bert_classification()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=4, per_device_train_batch_size=8,
        learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True, logging_steps=2)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, data_collator=collator,
        callbacks=[LCATrainerCallback(data, collator=collator, out=tmp_path / "hf.h5")])
    trainer.train()
    with RunBundle.open(tmp_path / "hf.h5") as b:
        minibatch = b.loss_minibatch()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert np.isnan(minibatch[[0, 2]]).all()
    np.testing.assert_allclose(minibatch[[1, 3]], logged, rtol=1e-12)


def test_causal_lm_heads_are_detected():
    assert is_causal_lm(_gpt2_lm()[0])
    assert not is_causal_lm(_bert_mlm()[0]) and not is_causal_lm(_bert_classification()[0])


def test_gradient_accumulation_is_one_step_per_optimizer_step(tmp_path):
    model, data, collator = _gpt2_lm()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=2, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, learning_rate=1e-2, report_to=[], save_strategy="no",
        use_cpu=True, seed=0, disable_tqdm=True, logging_steps=1)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, data_collator=collator,
        callbacks=[LCATrainerCallback(data, collator=collator, out=tmp_path / "hf.h5")])
    trainer.train()
    with RunBundle.open(tmp_path / "hf.h5") as b:
        loss, minibatch = b.loss_train(), b.loss_minibatch()
    assert len(loss) == 3  # two optimizer steps, four minibatches
    np.testing.assert_allclose(loss[-1], _own_loss(model, collator(data)), rtol=1e-6)
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    np.testing.assert_allclose(minibatch, logged, rtol=1e-12)
