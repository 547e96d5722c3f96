"""The Lightning and Hugging Face callbacks write the same LCA as the plain LCATracker driven
along the same trajectory (CPU, tiny models, a few steps)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute import LCATracker
from compute.lca.params import flat_params, load_flat_params
from lcaviz.bundle import RunBundle


def _read(path):
    with RunBundle.open(path) as b:
        return b.status, b.lca_layer(), b.rows(), b.loss_train(), b.config


def _replay(model0, path, x, y, out, **kw):
    """The plain tracker along the recorded θ_1..θ_T of ``model0``'s parameters."""
    model = copy.deepcopy(model0)
    with LCATracker(model, x, y, out=out, **kw) as lca:
        for theta in path:
            load_flat_params(model, theta)
            lca.step()


def tiny_lightning_module(L):
    """A LightningModule class (5 -> 7 -> 3 tanh MLP, SGD lr 0.5 momentum 0.9) of the installed
    ``lightning`` module ``L``; defined here so the tests without lightning still import."""

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            xb, yb = batch
            return F.cross_entropy(self(xb), yb)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)

    return Module


def _same(a, b):
    assert a[0] == b[0] == "complete"
    np.testing.assert_array_equal(a[1], b[1])  # per-layer LCA, float64
    np.testing.assert_array_equal(a[2], b[2])  # per-parameter rows
    np.testing.assert_array_equal(a[3], b[3])


def test_lightning_callback_equals_the_plain_tracker(tmp_path):
    L = pytest.importorskip("lightning")
    from compute.integrations.lightning import LCACallback

    Module = tiny_lightning_module(L)

    class Path(L.Callback):  # records θ after every optimizer step
        def __init__(self):
            self.thetas, self.step = [], 0

        def on_train_batch_end(self, trainer, pl, outputs, batch, i):
            if trainer.global_step > self.step:
                self.thetas.append(flat_params(pl))
                self.step = trainer.global_step

    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    module = Module()
    start = copy.deepcopy(module)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    path = Path()
    trainer = L.Trainer(max_steps=5, accumulate_grad_batches=2, callbacks=[
        path, LCACallback(x, y, out=tmp_path / "lit.h5", chunk_size=32)], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu")
    trainer.fit(module, loader)
    got = _read(tmp_path / "lit.h5")
    assert len(path.thetas) == 5 and got[1].shape[0] == 5  # one step per optimizer step
    assert got[4]["optimizer"] == "SGD" and got[4]["lr"] == 0.5
    _replay(start, path.thetas, x, y, tmp_path / "plain.h5", chunk_size=32)
    _same(got, _read(tmp_path / "plain.h5"))


def test_hf_trainer_callback_equals_the_plain_tracker(tmp_path):
    transformers = pytest.importorskip("transformers")
    from compute.integrations.hf import HFLogits, LCATrainerCallback, collate_fixed_set, hf_loss

    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=24,
                                  max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    start = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(1, 30, (int(n),), generator=g).tolist(),
             "labels": int(c)} for n, c in zip(torch.randint(4, 9, (40,), generator=g),
                                               torch.randint(0, 3, (40,), generator=g),
                                               strict=True)]
    collator = transformers.DataCollatorWithPadding(
        transformers.PreTrainedTokenizerFast(tokenizer_object=_tokenizer(), pad_token="[PAD]"))
    thetas = []

    class Path(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            thetas.append(flat_params(model))

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=4, per_device_train_batch_size=8,
        learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True, logging_strategy="no")
    cb = LCATrainerCallback(data, collator=collator, out=tmp_path / "hf.h5", chunk_size=16)
    transformers.Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                         callbacks=[Path(), cb]).train()
    got = _read(tmp_path / "hf.h5")
    assert len(thetas) == 4 and got[1].shape[0] == 4 and got[4]["optimizer"] == "AdamW"
    x, y, names = collate_fixed_set(data, collator)
    _replay(HFLogits(start, names), thetas, x, y, tmp_path / "plain.h5", chunk_size=16,
            loss_fn=hf_loss(start, y))
    _same(got, _read(tmp_path / "plain.h5"))
    # the network by its own name (not the wrapper's), its parameters without "hf."
    assert got[4]["net"] == "BertForSequenceClassification" and got[4]["frozen_params"] == []
    assert got[4]["parameters"][0] == "bert.embeddings.word_embeddings.weight"


def _tokenizer():
    """A word-level tokenizer with ids 0..29 (only its padding is used)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    vocab = {"[PAD]": 0, **{f"w{i}": i for i in range(1, 30)}}
    return Tokenizer(WordLevel(vocab, unk_token="[PAD]"))
