"""Cost of per-example LCA on Hugging Face models (issue 24), side by side in one process.

    python benchmarks/bench_per_example_hf.py [--model gpt2|bert|all] [--sequences 256]
                                              [--tokens 32] [--hidden 64] [--layers 2]
                                              [--chunk-size 128] [--repeats 5] [--threads 1]
                                              [--no-conv1d-rule]

Tiny random-init models built from configs (no hub downloads), float32, padded sequences with
an attention mask, through the callback's wrapper and loss (``HFLogits``, ``hf_loss``): GPT-2
(causal LM, labels -100 on padding) and BERT sequence classification. For each it times, one
``LCAIntegrator.step`` each along the same random-walk path (θ_{t+1} = θ_t + 10⁻⁴·randn) and
interleaved, the floor (2 full-dataset gradients), plain rk4 and rk4 with
``per_example=arange(N)``; and it prints which modules have a closed-form rule and which the
``torch.func.jvp`` fallback (``PerExampleDirectional.handlers``), the layers the sum check
repaired and the extra passes. ``--no-conv1d-rule`` sends GPT-2's Conv1D to the fallback (what
it cost before its rule).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
import transformers

from compute.integrations.hf import IGNORE, HFLogits, hf_loss
from compute.lca import per_example
from compute.lca.integrator import LCAIntegrator
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params


def _data(args, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n, t = args.sequences, args.tokens
    lens = torch.randint(t // 4, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None] < lens[:, None]).long()
    return torch.randint(1, vocab, (n, t), generator=g) * mask, mask


def build(kind: str, args):
    """(wrapped model, x, y, loss_fn) of a GPT-2 LM or a BERT classifier."""
    vocab = 1000
    torch.manual_seed(0)
    ids, mask = _data(args, vocab)
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=vocab, n_embd=args.hidden, n_layer=args.layers, n_head=4,
            n_positions=args.tokens, bos_token_id=1, eos_token_id=1))
        y = ids.masked_fill(mask == 0, IGNORE)
    else:
        model = transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
            num_attention_heads=4, intermediate_size=4 * args.hidden,
            max_position_embeddings=args.tokens, num_labels=3))
        y = torch.arange(len(ids)) % 3
    model.eval()
    return HFLogits(model), torch.stack([ids, mask], 1), y, hf_loss(model, y)


def bench(kind: str, args) -> dict:
    wrapped, x, y, loss_fn = build(kind, args)

    def objective() -> FullDatasetObjective:
        return FullDatasetObjective(wrapped, x, y, n_classes=1, chunk_size=args.chunk_size,
                                    loss_fn=loss_fn)

    theta0 = flat_params(wrapped)
    g = torch.Generator().manual_seed(2)
    walk = [theta0]
    for _ in range(args.repeats + 2):
        walk.append(walk[-1] + 1e-4 * torch.randn(theta0.shape, generator=g))
    obj = objective()
    integrators = {}
    for key, index in (("rk4", None), ("rk4_examples", torch.arange(len(y)))):
        integ = LCAIntegrator(objective(), "rk4", per_example=index)
        integ.start(theta0)
        integrators[key] = (integ, iter(walk[1:]))

    def step(key: str):
        integ, path = integrators[key]
        return integ.step(next(path))

    fns = {"floor": lambda: (obj.evaluate(walk[1]), obj.evaluate(walk[2])),
           "rk4": lambda: step("rk4"), "rk4_examples": lambda: step("rk4_examples")}
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    tap = integrators["rk4_examples"][0].examples
    return {**{k: statistics.median(v) for k, v in times.items()},
            "handlers": tap.engine.handlers, "repaired": tap.repaired,
            "extra_passes": tap.extra_passes, "n_layers": tap.n_layers,
            "params": theta0.numel()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", choices=("gpt2", "bert", "all"))
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-conv1d-rule", action="store_true",
                        help="GPT-2's Conv1D through the jvp fallback instead of its rule")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_conv1d_rule:
        plain = per_example.rule_for
        per_example.rule_for = lambda m: None if type(m).__name__ == "Conv1D" else plain(m)
    print(f"{args.sequences} sequences x {args.tokens} tokens, hidden {args.hidden}, "
          f"{args.layers} layers, float32, chunk {args.chunk_size}, {args.threads} thread(s), "
          f"medians of {args.repeats}{', Conv1D by jvp' if args.no_conv1d_rule else ''}")
    for kind in ("gpt2", "bert") if args.model == "all" else (args.model,):
        r = bench(kind, args)
        print(f"{kind}: {r['params']:,} parameters, {r['n_layers']} layers; handlers "
              f"{dict(Counter(r['handlers'].values()))}: jvp for "
              f"{[m for m, h in r['handlers'].items() if h == 'jvp'] or 'none'}")
        for key, label in (("floor", "floor (2 gradients)"), ("rk4", "integrator rk4"),
                           ("rk4_examples", "integrator rk4, per_example=all")):
            print(f"  {label:<32} {r[key]:>8.3f} s  {r[key] / r['floor']:>5.2f}x floor")
        print(f"  per-example / plain rk4: {r['rk4_examples'] / r['rk4']:.2f}x; extra passes "
              f"{r['extra_passes']}; repaired {r['repaired'] or 'none'}; storage per row "
              f"{args.sequences} x {r['n_layers']} x 4 B = "
              f"{args.sequences * r['n_layers'] * 4 / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
