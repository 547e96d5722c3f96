"""The Lightning callback resumes with the trainer: ``fit(ckpt_path=...)`` of a run stopped by
an exception continues its bundle, equal to an uninterrupted run (issue 23 item 2)."""

import h5py
import numpy as np
import pytest
import torch

from tests.compute.test_integrations import tiny_lightning_module

SERIES = ("lca", "lca_rows", "lca_layer", "loss/train", "loss/minibatch", "lca_residual",
          "param_help_iters", "param_moves")


def _read(path) -> dict:
    with h5py.File(path, "r") as f:
        return {**{k: f[k][()] for k in SERIES}, "status": f.attrs["status"]}


def test_lightning_fit_from_a_checkpoint_continues_the_bundle(tmp_path):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from compute.integrations.lightning import LCACallback

    Module = tiny_lightning_module(L)

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, pl, outputs, batch, i):
            if trainer.global_step == 5:
                raise RuntimeError("crash at step 5")

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)

    def fit(out, *callbacks, ckpt_path=None):
        torch.manual_seed(0)
        trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu",
                            enable_checkpointing=any(isinstance(c, ModelCheckpoint)
                                                     for c in callbacks),
                            callbacks=[LCACallback(x, y, out=out, chunk_size=16, lca_rows=2),
                                       *callbacks])
        trainer.fit(Module(), loader, ckpt_path=ckpt_path)

    fit(tmp_path / "ref.h5")
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1,
                            save_on_train_epoch_end=True)
    with pytest.raises(RuntimeError, match="crash at step 5"):
        fit(tmp_path / "run.h5", saver, Crash())
    with h5py.File(tmp_path / "run.h5", "r") as f:
        assert f.attrs["status"] == "failed" and f["progress"][0] == 5
    (ckpt,) = sorted((tmp_path / "ckpt").glob("*step=3*.ckpt"))  # the end of epoch 0
    fit(tmp_path / "run.h5", ckpt_path=ckpt)
    got, ref = _read(tmp_path / "run.h5"), _read(tmp_path / "ref.h5")
    assert got["status"] == ref["status"] == "complete" and got["lca_layer"].shape[0] == 6
    for k in SERIES:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_hf_train_from_a_checkpoint_continues_the_bundle(tmp_path):
    transformers = pytest.importorskip("transformers")
    from compute.integrations.hf import STATE_FILE, LCATrainerCallback
    from tests.compute.test_integrations import _tokenizer

    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=24,
                                  max_position_embeddings=16, num_labels=3,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(1, 30, (int(n),), generator=g).tolist(),
             "labels": int(c)} for n, c in zip(torch.randint(4, 9, (40,), generator=g),
                                               torch.randint(0, 3, (40,), generator=g),
                                               strict=True)]
    collator = transformers.DataCollatorWithPadding(
        transformers.PreTrainedTokenizerFast(tokenizer_object=_tokenizer(), pad_token="[PAD]"))

    class Crash(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise RuntimeError("crash at step 3")

    def train(out, name, *callbacks, resume=None):
        torch.manual_seed(0)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / name), max_steps=4, per_device_train_batch_size=8,
            learning_rate=1e-2, report_to=[], save_strategy="steps", save_steps=2,
            use_cpu=True, seed=0, disable_tqdm=True, logging_steps=1)
        cb = LCATrainerCallback(data, collator=collator, out=out, chunk_size=16, lca_rows=2)
        trainer = transformers.Trainer(
            model=transformers.BertForSequenceClassification(cfg), args=args,
            train_dataset=data, data_collator=collator, callbacks=[cb, *callbacks])
        try:
            trainer.train(resume_from_checkpoint=resume)
        finally:
            if cb.tracker is not None:  # the Trainer has no exception hook: as a kill leaves it
                cb.tracker.writer.f.close()
                cb.tracker.watch.remove()

    train(tmp_path / "ref.h5", "ref")
    with pytest.raises(RuntimeError, match="crash at step 3"):
        train(tmp_path / "run.h5", "run", Crash())
    assert (tmp_path / "run/checkpoint-2" / STATE_FILE).exists()
    train(tmp_path / "run.h5", "run", resume=str(tmp_path / "run/checkpoint-2"))
    got, ref = _read(tmp_path / "run.h5"), _read(tmp_path / "ref.h5")
    assert got["status"] == ref["status"] == "complete" and got["lca_layer"].shape[0] == 4
    for k in SERIES:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
