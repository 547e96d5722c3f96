"""The Lightning callback resumes with the trainer: ``fit(ckpt_path=...)`` of a run stopped by
an exception continues its bundle, equal to an uninterrupted run (issue 23 item 2)."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

SERIES = ("lca", "lca_rows", "lca_layer", "loss/train", "loss/minibatch", "lca_residual",
          "param_help_iters", "param_moves")


def _read(path) -> dict:
    with h5py.File(path, "r") as f:
        return {**{k: f[k][()] for k in SERIES}, "status": f.attrs["status"]}


def test_lightning_fit_from_a_checkpoint_continues_the_bundle(tmp_path):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from compute.integrations.lightning import LCACallback

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
