"""Hugging Face ``Trainer``: ``LCATrainerCallback`` writes the LCA bundle of ``trainer.train()``.

    from compute.integrations.hf import LCATrainerCallback

    cb = LCATrainerCallback(train_dataset, collator=collator, out="runs/hf.h5")
    Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator,
            callbacks=[cb]).train()

The fixed set (by default the whole training dataset) is collated once by ``collator``, and the
model sees every input the collator produces (``input_ids``, ``attention_mask``,
``token_type_ids``, ...). The allocated loss is the one the model trains on, evaluated on the
whole fixed set (dropout off): for sequence labels (N,) the mean per-sequence cross-entropy
(mean squared error for a one-label regression head, binary cross-entropy for multi-label
float targets); for token labels (N, L) the mean over all labelled tokens of the set (positions
labelled -100 ignored), with the labels shifted one position for causal-LM heads (token t
predicts token t + 1; detected from the model's class, or ``shift_labels=``). That is the
model's own ``loss`` on the fixed set as one batch, to float rounding. Any other loss: pass
``loss_fn=`` (per example, ``(logits, labels) -> (n,)``).

Per-example LCA (``per_example=True`` or K, passed to the tracker): an example is a sequence,
and its ℓ_n is :class:`HFLoss`'s term for it (token labels: the sum of its labelled tokens'
losses over the fixed set's mean labelled tokens per sequence), so the mean of ℓ_n over the
fixed set is the model's own loss and Σ_{t,l} E[t, n, l] = (ℓ_n(θ_T) − ℓ_n(θ_0)) / N up to the
quadrature residual (tests/compute/test_per_example_hf.py). Token labels give the bundle no
per-example class label.

One LCA step per optimizer step. ``loss/minibatch`` holds the trainer's logged training loss
at the steps it logs (its mean since the previous log; ``logging_steps=1`` logs every step) and
NaN between. It need not equal the allocated loss even at θ_t: dropout is on in training, and
transformers 5.24's ``Trainer`` divides a ``GPT2LMHeadModel``'s token-loss sum by the count of
unshifted labels (its ``loss_type`` is None): 0.84 of the model's own loss on 3-8-token
sequences. The ``Trainer`` has no hook for an exception in ``train()``: the bundle then stays
``running``, as a killed ``lca-run`` does, with every iteration up to the last flush readable.

Resume: every checkpoint the trainer saves gets the tracker's state (``lca_tracker.pt`` in
``checkpoint-N/``), and ``trainer.train(resume_from_checkpoint=...)`` continues the bundle from
it (a ``checkpoint-N`` without one resumes training only: the tracker then refuses the
unfinished bundle unless ``resume=True`` starts it again). Under ``torchrun`` rank 0 writes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

try:
    from transformers import TrainerCallback
except ImportError as e:
    raise ImportError("compute.integrations.hf needs transformers: "
                      "pip install 'lca-explorer[hf]'") from e

from compute.integrations.tracker import LCATracker

STATE_FILE = "lca_tracker.pt"  # the tracker's state in each checkpoint-N folder
IGNORE = -100  # the label Hugging Face losses skip (padding, unmasked MLM tokens)
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # GPT2LMHeadModel, LlamaForCausalLM, ...


class HFLogits(nn.Module):
    """The HF model as ``x -> logits``: ``x`` (N, K, L) stacks the K inputs ``input_names``.
    Its parameters are the model's own (shared), so the tracker follows training."""

    lca_wrapped = "hf"  # compute.lca.params.unwrap: parameter names and the network are the model's

    def __init__(self, model: nn.Module,
                 input_names: Sequence[str] = ("input_ids", "attention_mask")):
        super().__init__()
        self.hf = model
        self.input_names = list(input_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = {name: x[:, k] for k, name in enumerate(self.input_names)}
        return self.hf(**inputs).logits


def collate_fixed_set(dataset, collator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The whole ``dataset`` as one batch: ``x`` (N, K, L) stacks every input the collator
    produces (all but ``labels``), ``y`` the labels, and the K input names.

    Raises:
        ValueError: no labels, or an input that is not an (N, L) integer tensor like
            ``input_ids`` (it could not be stacked).
    """
    batch = dict(collator([dataset[i] for i in range(len(dataset))]))
    if "labels" not in batch:
        raise ValueError("LCATrainerCallback: the collator's batch has no 'labels'; the "
                         "allocated loss needs them")
    y = batch.pop("labels")
    ids = batch["input_ids"]
    for name, value in batch.items():
        if not (isinstance(value, torch.Tensor) and value.shape == ids.shape
                and not value.is_floating_point()):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise ValueError(f"LCATrainerCallback: the collator's {name!r} is {shape}; every "
                             f"input must be an integer tensor shaped like input_ids "
                             f"{tuple(ids.shape)} (or pass a collator without it)")
    names = list(batch)
    return torch.stack([batch[n] for n in names], 1), y, names


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a causal-LM head, whose loss shifts the labels one position."""
    name = type(model).__name__
    if name.endswith(_CAUSAL_SUFFIXES) or getattr(model, "loss_type", None) == "ForCausalLM":
        return True
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - an older or newer transformers layout
        return False
    return name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


class HFLoss:
    """Per-example loss whose mean over the fixed set is the model's own loss there.

    Args:
        kind: ``"single_label"`` (cross-entropy per sequence), ``"regression"`` (squared
            error), ``"multi_label"`` (binary cross-entropy, mean over labels), ``"token"``
            (cross-entropy per token), ``"causal"`` (``"token"`` with labels shifted by one).
        tokens_per_example: token kinds: labelled tokens in the fixed set / N, so that each
            sequence's sum over its tokens, divided by it, averages to the per-token mean.
    """

    def __init__(self, kind: str, tokens_per_example: float = 1.0):
        self.kind, self.tokens_per_example = kind, tokens_per_example
        self.__name__ = f"hf_{kind}"  # what the bundle's config records as loss_fn

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        if self.kind == "single_label":
            return F.cross_entropy(logits, labels, reduction="none")
        if self.kind == "regression":
            err = (logits.squeeze(-1) - labels.to(logits.dtype)) ** 2
            return err if err.dim() == 1 else err.mean(1)
        if self.kind == "multi_label":
            return F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), reduction="none").mean(1)
        if self.kind == "causal":
            logits, labels = logits[:, :-1], labels[:, 1:]  # token t predicts token t + 1
        losses = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                                 ignore_index=IGNORE)  # (n, L)
        return losses.sum(1) / self.tokens_per_example


def hf_loss(model: nn.Module, labels: torch.Tensor, shift_labels: bool | None = None) -> HFLoss:
    """The loss ``model`` trains on with these fixed-set ``labels`` (see :class:`HFLoss`).

    Args:
        model: the Hugging Face model (its class and config choose the kind).
        labels: the fixed set's labels, (N,), (N, C) or (N, L).
        shift_labels: token labels: shift them (causal LM); None = detect from the model.

    Raises:
        ValueError: token labels of which none is labelled (no loss to allocate).
    """
    cfg = getattr(model, "config", None)
    if labels.dim() == 1 or labels.is_floating_point():
        num_labels = getattr(cfg, "num_labels", 2)
        kind = getattr(cfg, "problem_type", None)  # as HF's sequence-classification heads
        if kind is None:
            kind = ("regression" if num_labels == 1 else
                    "single_label" if not labels.is_floating_point() else "multi_label")
        return HFLoss(kind.removesuffix("_classification"))
    shift = is_causal_lm(model) if shift_labels is None else shift_labels
    counted = labels[:, 1:] if shift else labels
    n_tokens = int((counted != IGNORE).sum())
    if n_tokens == 0:
        raise ValueError("LCATrainerCallback: no token of the fixed set is labelled (all "
                         f"labels are {IGNORE}), so there is no loss to allocate")
    return HFLoss("causal" if shift else "token", n_tokens / len(labels))


class LCATrainerCallback(TrainerCallback):
    """Drive an :class:`~compute.integrations.tracker.LCATracker` from a Hugging Face ``Trainer``.

    Args:
        dataset: the fixed set's examples (default: the trainer's training dataset).
        collator: turns a list of examples into a batch with ``input_ids``, ``labels`` and
            any other model inputs (default: the trainer's data collator).
        out: bundle path.
        shift_labels: token labels: shift them one position (causal LM); None = detect.
        **tracker: any other ``LCATracker`` argument (method, lca_rows, chunk_size,
            loss_fn, ...); ``per_class`` is off by default, as in the tracker (pass True
            for sequence labels).
    """

    def __init__(self, dataset=None, *, out: str | Path, collator=None,
                 shift_labels: bool | None = None, **tracker):
        self.dataset, self.collator, self.out, self.kwargs = dataset, collator, out, tracker
        self.shift_labels = shift_labels
        self.tracker: LCATracker | None = None
        self._pending = False  # an optimizer step whose LCA waits for the trainer's log

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None,
                       optimizer=None, **kwargs):
        dataset = self.dataset or train_dataloader.dataset
        collator = self.collator or train_dataloader.collate_fn
        x, y, names = collate_fixed_set(dataset, collator)
        kw = {"loss_fn": hf_loss(model, y, self.shift_labels), **self.kwargs}
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
        wrapped = HFLogits(model, names).to(next(model.parameters()).device)
        self.tracker = LCATracker(wrapped, x, y, out=self.out, optimizer=optimizer, **kw)
        step = getattr(state, "global_step", 0)  # > 0: resume_from_checkpoint
        saved = os.path.join(args.output_dir, f"checkpoint-{step}", STATE_FILE) if step else ""
        if saved and os.path.exists(saved):
            self.tracker.load_state_dict(torch.load(saved, map_location="cpu",
                                                    weights_only=True))
        self.tracker.start()

    # The step's LCA is taken when the trainer logs it (on_log follows on_step_end with θ
    # unchanged), so that loss/minibatch holds the logged loss; otherwise before the next step.
    def on_step_end(self, args, state, control, **kwargs):
        self._flush()
        self._pending = self.tracker is not None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        self._flush(float(loss) if isinstance(loss, (int, float)) else math.nan)

    def on_step_begin(self, args, state, control, **kwargs):
        self._flush()

    def on_save(self, args, state, control, **kwargs):
        """After the trainer wrote ``checkpoint-N``: the tracker's state at step N beside it."""
        self._flush()  # the step just taken, if its log has not come (as the next step would)
        if self.tracker is not None:
            lca_state = self.tracker.state_dict()
            if state.is_world_process_zero:
                folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
                tmp = os.path.join(folder, STATE_FILE + ".tmp")
                torch.save(lca_state, tmp)
                os.replace(tmp, os.path.join(folder, STATE_FILE))

    def on_train_end(self, args, state, control, **kwargs):
        self._flush()
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def _flush(self, minibatch_loss: float = math.nan) -> None:
        if self._pending and self.tracker is not None:
            self._pending = False
            self.tracker.step(minibatch_loss=minibatch_loss)
