"""LCATracker and its Lightning callback against the 2-gradient floor, side by side.

    python benchmarks/bench_tracker.py [--dataset mnist] [--steps 12] [--repeats 3]

MNIST-FC on the training set (55,000 images; ``--dataset synthetic`` for a quick run). Prints
medians of:
  * floor: two full-dataset gradient evaluations (what rk4 with endpoint reuse must pay);
  * ``LCATracker.step()`` (the LCA of one optimizer step, bundle write included) and its ratio
    to the floor;
  * the Lightning callback's own cost per step (its hook time minus the tracker step inside
    it), as a share of the tracker step;
  * the same for the Hugging Face ``TrainerCallback`` on a small BERT classifier (2 layers,
    hidden 64) over 2,000 generated token sequences, since an HF model is not MNIST-FC.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compute import LCATracker  # noqa: E402
from compute.data.datasets import load_splits  # noqa: E402
from compute.lca.params import flat_params  # noqa: E402
from compute.nets.models import build_model  # noqa: E402


def _setup(dataset: str):
    splits = load_splits(dataset, None, seed=0)
    tr = splits.train
    model = build_model("mnist_fc", tr.input_shape, tr.n_classes, seed=0)
    return model, tr.x, tr.y


def floor(model, x, y, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as d, LCATracker(model, x, y, out=Path(d) / "f.h5",
                                                         chunk_size=5000) as lca:
        obj, theta = lca.integ.objective, flat_params(model)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            obj.evaluate(theta)
            obj.evaluate(theta)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tracker_steps(model, x, y, steps: int) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    out = []
    with tempfile.TemporaryDirectory() as d, LCATracker(model, x, y, out=Path(d) / "t.h5",
                                                         chunk_size=5000) as lca:
        for t in range(steps):
            idx = torch.arange(t * 250, (t + 1) * 250) % len(y)
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            t0 = time.perf_counter()
            lca.step()
            out.append(time.perf_counter() - t0)
    return out[1:]  # the first step includes one-off work


def timed(callback: type, hook: str, hooks: list, inner: list) -> type:
    """A subclass of ``callback`` whose ``hook`` appends its own seconds to ``hooks`` and those
    of the ``tracker.step()`` it makes to ``inner`` (calls that make no step are not counted)."""

    def timed_hook(self, *a, **k):
        step = self.tracker.step

        def timed_step(**kw):
            t0 = time.perf_counter()
            result = step(**kw)
            inner.append(time.perf_counter() - t0)
            return result

        self.tracker.step = timed_step
        n, t0 = len(inner), time.perf_counter()
        getattr(callback, hook)(self, *a, **k)
        if len(inner) > n:
            hooks.append(time.perf_counter() - t0)
        self.tracker.step = step

    return type(f"Timed{callback.__name__}", (callback,), {hook: timed_hook})


def lightning_overhead(model, x, y, steps: int) -> tuple[float, float]:
    """(median hook seconds, median tracker.step seconds inside the hook) per step."""
    import lightning as L

    from compute.integrations.lightning import LCACallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, xb):
            return self.net(xb)

        def training_step(self, batch, i):
            xb, yb = batch
            return F.cross_entropy(self(xb), yb)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    hooks, inner = [], []
    Timed = timed(LCACallback, "on_train_batch_end", hooks, inner)

    with tempfile.TemporaryDirectory() as d:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                             batch_size=250, shuffle=False)
        trainer = L.Trainer(max_steps=steps, callbacks=[Timed(x, y, out=Path(d) / "l.h5",
                                                              chunk_size=5000)],
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu")
        trainer.fit(Module(), loader)
    return statistics.median(hooks[1:]), statistics.median(inner[1:])


def hf_overhead(steps: int) -> tuple[float, float]:
    """(median hook seconds, median tracker.step seconds inside the hook) per HF step."""
    import transformers
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from compute.integrations.hf import LCATrainerCallback

    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128,
                                  max_position_embeddings=32, num_labels=4)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(1, 100, (16,), generator=g).tolist(),
             "labels": int(torch.randint(0, 4, (), generator=g))} for _ in range(2000)]
    vocab = {"[PAD]": 0, **{f"w{i}": i for i in range(1, 100)}}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="[PAD]")), pad_token="[PAD]")
    collator = transformers.DataCollatorWithPadding(tok)
    hooks, inner = [], []
    # the callback allocates a step when the trainer logs it or, with no log, when the next
    # step begins (on_step_begin) -- logging is off here
    Timed = timed(LCATrainerCallback, "on_step_begin", hooks, inner)

    with tempfile.TemporaryDirectory() as d:
        args = transformers.TrainingArguments(
            output_dir=str(Path(d) / "hf"), max_steps=steps, per_device_train_batch_size=64,
            learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True, seed=0,
            disable_tqdm=True, logging_strategy="no")
        cb = Timed(data, collator=collator, out=Path(d) / "hf.h5", chunk_size=500)
        transformers.Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                             callbacks=[cb]).train()
    return statistics.median(hooks[1:]), statistics.median(inner[1:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    model, x, y = _setup(a.dataset)
    fl = floor(model, x, y, a.repeats)
    tr = statistics.median(tracker_steps(model, x, y, a.steps))
    hook, inner = lightning_overhead(model, x, y, a.steps)
    print(f"MNIST-FC on {len(y):,} examples ({a.dataset}), {torch.get_num_threads()} threads")
    print(f"floor (2 full gradients)        {fl:8.3f} s")
    print(f"LCATracker.step()               {tr:8.3f} s   ratio to floor {tr / fl:5.3f}")
    print(f"Lightning hook / tracker inside {hook:8.3f} / {inner:.3f} s   callback's own cost "
          f"{100 * (hook - inner) / inner:+.2f} % of the tracker step")
    hook, inner = hf_overhead(a.steps)
    print(f"HF hook / tracker inside        {hook:8.3f} / {inner:.3f} s   callback's own cost "
          f"{100 * (hook - inner) / inner:+.2f} % of the tracker step (BERT, 2,000 sequences)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
