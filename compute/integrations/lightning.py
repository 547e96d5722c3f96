"""PyTorch Lightning: ``LCACallback`` writes the LCA bundle of a ``Trainer.fit``.

    from compute.integrations.lightning import LCACallback

    lca = LCACallback(X_fixed, y_fixed, out="runs/lit.h5", lca_rows="dense:200,10")
    trainer = L.Trainer(max_steps=1000, callbacks=[lca])
    trainer.fit(module, train_loader)

The allocated loss is the fixed set's, evaluated with ``model`` (default: the LightningModule
itself, whose ``forward`` must map inputs to the outputs the loss takes, e.g. logits). One LCA
step per optimizer step (gradient accumulation and skipped steps follow ``global_step``).

Resume: the callback's state (``LCATracker.state_dict()``) is saved in every Lightning
checkpoint, so ``trainer.fit(module, loader, ckpt_path=...)`` continues the bundle from that
checkpoint's step (the restored model must be the one of that step; a checkpoint taken mid-epoch
replays the data only if your loader does). Under the DDP strategy rank 0 alone writes.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError as e:
        raise ImportError("compute.integrations.lightning needs PyTorch Lightning: "
                          "pip install 'lca-explorer[lightning]'") from e

from compute.integrations.tracker import LCATracker


class LCACallback(Callback):
    """Drive an :class:`~compute.integrations.tracker.LCATracker` from a Lightning ``Trainer``.

    Args:
        inputs, targets: the fixed set whose loss is allocated (see ``LCATracker``).
        out: bundle path.
        model: the module evaluated on the fixed set (default: the LightningModule).
        **tracker: any other ``LCATracker`` argument (method, per_class, lca_rows, ...).
    """

    def __init__(self, inputs, targets=None, *, out: str | Path, model: nn.Module | None = None,
                 **tracker):
        super().__init__()
        self.inputs, self.targets, self.out = inputs, targets, out
        self.model, self.kwargs = model, tracker
        self.tracker: LCATracker | None = None
        self._step = 0
        self._resume_from: dict | None = None  # the tracker state of the checkpoint resumed

    def state_dict(self) -> dict:
        """Saved in Lightning's checkpoints: the running tracker's state (empty when none)."""
        return {"lca": self.tracker.state_dict()} if self.tracker is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Lightning restores the checkpoint's state before ``on_fit_start``."""
        self._resume_from = state_dict.get("lca")

    def on_fit_start(self, trainer, pl_module) -> None:
        opts = trainer.optimizers
        self.tracker = LCATracker(self.model or pl_module, self.inputs, self.targets,
                                  out=self.out, optimizer=opts[0] if opts else None,
                                  **self.kwargs)
        if self._resume_from is not None:
            self.tracker.load_state_dict(self._resume_from)
            self._resume_from = None
        self.tracker.start()
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.tracker is None or trainer.global_step == self._step:
            return  # no optimizer step in this batch (accumulating, or skipped)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.tracker.step(minibatch_loss=float(loss) if loss is not None else float("nan"))
        self._step = trainer.global_step

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.tracker is not None:
            self.tracker.fail(f"{type(exception).__name__}: {exception}")
            self.tracker = None
