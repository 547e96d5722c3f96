"""Hugging Face ``Trainer``: ``LCATrainerCallback`` writes the LCA bundle of ``trainer.train()``.

    from compute.integrations.hf import LCATrainerCallback

    cb = LCATrainerCallback(train_dataset, collator=collator, out="runs/hf.h5")
    Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator,
            callbacks=[cb]).train()

The allocated loss is the mean per-example cross-entropy of the model's logits on the fixed set
(by default the whole training dataset, collated once by ``collator``): per sequence for
sequence classification (labels (N,)), the mean over labelled tokens for token labels (N, L)
(positions labelled -100 ignored). One LCA step per optimizer step (``on_step_end``). The
``Trainer`` has no hook for an exception in ``train()``: the bundle then stays ``running``, as a
killed ``lca-run`` does, with every iteration up to the last flush readable.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

try:
    from transformers import TrainerCallback
except ImportError as e:
    raise ImportError("compute.integrations.hf needs transformers: "
                      "pip install 'lca-explorer[hf]'") from e

from compute.tracker import LCATracker


class HFLogits(nn.Module):
    """The HF model as ``x -> logits``: ``x`` (N, 2, L) stacks input ids and attention mask.
    Its parameters are the model's own (shared), so the tracker follows training."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.hf = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=x[:, 0], attention_mask=x[:, 1]).logits


def per_example_hf_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per example: per sequence, or the mean over labelled tokens."""
    if labels.dim() == 1:
        return F.cross_entropy(logits, labels, reduction="none")
    losses = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                             ignore_index=-100)  # (N, L)
    n = (labels != -100).sum(1).clamp(min=1)
    return losses.sum(1) / n


def collate_fixed_set(dataset, collator) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole ``dataset`` as one batch: ``x`` (N, 2, L) ids and mask, ``y`` labels."""
    batch = collator([dataset[i] for i in range(len(dataset))])
    ids = batch["input_ids"]
    mask = batch.get("attention_mask", torch.ones_like(ids))
    return torch.stack([ids, mask], 1), batch["labels"]


class LCATrainerCallback(TrainerCallback):
    """Drive an :class:`~compute.tracker.LCATracker` from a Hugging Face ``Trainer``.

    Args:
        dataset: the fixed set's examples (default: the trainer's training dataset).
        collator: turns a list of examples into a batch with ``input_ids``, optionally
            ``attention_mask``, and ``labels`` (default: the trainer's data collator).
        out: bundle path.
        **tracker: any other ``LCATracker`` argument (method, lca_rows, chunk_size, ...);
            ``per_class`` is off by default, as in the tracker (pass True for sequence labels).
    """

    def __init__(self, dataset=None, *, out: str | Path, collator=None, **tracker):
        self.dataset, self.collator, self.out, self.kwargs = dataset, collator, out, tracker
        self.tracker: LCATracker | None = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None,
                       optimizer=None, **kwargs):
        dataset = self.dataset or train_dataloader.dataset
        collator = self.collator or train_dataloader.collate_fn
        x, y = collate_fixed_set(dataset, collator)
        kw = {"loss_fn": per_example_hf_loss, **self.kwargs}
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
        self.tracker = LCATracker(HFLogits(model).to(next(model.parameters()).device), x, y,
                                  out=self.out, optimizer=optimizer, **kw)
        self.tracker.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.step()

    def on_train_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
