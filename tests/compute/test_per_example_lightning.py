"""Lightning's LCACallback passes ``per_example`` through (issue 24): the bundle's per-example
rows of a float64 ``Trainer.fit`` equal the per-example LCA of the same steps computed apart
(:func:`compute.lca.per_example_lca.per_example_step_lca`, float64) for the seeded subset."""

import numpy as np
import pytest
import torch

from compute.lca.params import flat_params
from compute.lca.per_example_lca import per_example_step_lca
from compute.lca.subset import example_subset
from lcaviz.bundle import RunBundle
from tests.compute.test_integrations import tiny_lightning_module


def test_lightning_callback_records_per_example_lca(tmp_path):
    L = pytest.importorskip("lightning")
    from compute.integrations.lightning import LCACallback

    class Path(L.Callback):  # θ after every optimizer step
        def __init__(self):
            self.thetas = []

        def on_train_batch_end(self, trainer, pl, outputs, batch, i):
            self.thetas.append(flat_params(pl))

    torch.manual_seed(0)
    x, y = torch.randn(64, 5, dtype=torch.float64), torch.randint(0, 3, (64,))
    module = tiny_lightning_module(L)().double()
    theta0 = flat_params(module)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    path = Path()
    trainer = L.Trainer(max_steps=3, callbacks=[path, LCACallback(
        x, y, out=tmp_path / "lit.h5", chunk_size=32, per_example=8, lca_rows="1", seed=2)],
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, loader)
    with RunBundle.open(tmp_path / "lit.h5") as b:
        assert b.status == "complete"
        index, rows, loss = b.example_index(), b.example_lca_rows(), b.example_loss()
    assert index.tolist() == example_subset(y, 8, 2).tolist()  # seeded, class-stratified
    assert rows.shape == (3, 8, 2) and len(path.thetas) == 3 and np.abs(rows).max() > 0
    for t, (a, b) in enumerate(zip([theta0, *path.thetas[:-1]], path.thetas, strict=True)):
        ref = per_example_step_lca(module, x, y, a, b, method="rk4", chunk_size=32)
        want = ref.lca[index].numpy()
        np.testing.assert_allclose(rows[t], want, rtol=2e-7, atol=1e-9 * np.abs(want).max())
        np.testing.assert_allclose(loss[t], ref.loss_before[index].numpy(), rtol=1e-7)
