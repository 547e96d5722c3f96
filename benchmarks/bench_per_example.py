"""Cost of per-example LCA (issue 24's math core), side by side in one process.

    python benchmarks/bench_per_example.py [--train-size 5000,55000] [--repeats 3]
                                           [--chunk-size 1000] [--threads 1] [--device cpu]
                                           [--data-root DIR] [--dataset mnist]
                                           [--net mnist_fc|lenet|transformer]
                                           [--only-integrator] [--rgb32]
                                           [--per-class [class|mixed]] [--keep-bytes B]
                                           [--groups]

MNIST-FC (compute/nets/models.py; or ``--net lenet``, ``--net transformer`` on modular addition)
on the first N training examples, float32. For one rk4 step θ_0 → θ_1 (θ_1 = θ_0 plus a
small random step) it prints medians over repeats, timed interleaved, and each one's ratio to
the floor:

  * floor: 2 full-dataset gradients (what plain rk4 pays per step with endpoint reuse);
  * 2 nodes: the per-example pass D[n, l] at the midpoint and the endpoint, with the sum
    check (the backward also forms the parameter gradient) and without it (the backward stops
    at the layers' outputs: no weight gradients). The start node is not in it: its D needs
    this step's Δθ at the previous step's end;
  * rk4 step: what a step costs in full without the check: the midpoint, the endpoint kept
    (``keep=True``) and the start node replayed from the previous endpoint's kept δ's along
    the new Δθ (``replay``: no forward or backward pass);
  * 3 nodes: the standalone ``per_example_step_lca`` (θ_0, ½, θ_1; it also copies the model
    and installs the hooks);
  * integrator rk4 / integrator rk4, per_example=all: one ``LCAIntegrator.step`` each along
    the same random-walk path, plain and with ``per_example=arange(N)`` (the values come
    from the integrator's own passes; the start node replayed), and their ratio: the cost
    of per-example LCA per iteration (issue 24's target: <= 1.5x plain rk4).

``--only-integrator`` times the floor and the two integrator rows only. ``--per-class`` runs
both integrators with per-class LCA (``class``: class-pure chunks; ``mixed``: one masked
backward per class, where the start node is an extra pass); ``--keep-bytes 0`` refuses to keep
the end node's δ's (the start node is then an extra pass). ``--groups`` adds a third
integrator, ``per_example=all`` with the model's component groups
(:func:`compute.nets.groups.component_groups`: the transformer's heads), whose steps also give
the per-example values of every head (``LCAStep.example_group``), and its ratio to the plain one.

Storage: a bundle row of per-example values is N_e × L × 4 bytes (float32), printed too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from compute.data.datasets import load_splits
from compute.lca.integrator import LCAIntegrator, layer_sums
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params, param_table
from compute.lca.per_example import PerExampleDirectional
from compute.lca.per_example_lca import per_example_step_lca
from compute.nets.groups import component_groups
from compute.nets.models import build_model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _interleaved(fns: dict, repeats: int, device: str) -> dict:
    """Median seconds of each function, timed in turn within every repeat (a shared, noisy
    machine then slows all of them alike)."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(n: int, args) -> dict:
    splits = load_splits(args.dataset, args.data_root, train_size=n, rgb32=args.rgb32)
    x, y = splits.train.x.to(args.device), splits.train.y.to(args.device)
    model = build_model(args.net, splits.train.input_shape, splits.train.n_classes,
                        seed=0).to(args.device)
    theta0 = flat_params(model)
    g = torch.Generator().manual_seed(1)
    delta = (1e-3 * torch.randn(theta0.shape, generator=g)).to(theta0)
    theta1, mid = theta0 + delta, theta0 + 0.5 * delta
    def objective() -> FullDatasetObjective:
        return FullDatasetObjective(model, x, y, n_classes=splits.train.n_classes,
                                    chunk_size=args.chunk_size)

    obj = objective()
    walk = [theta0]  # one θ per integrator step (warm-up + repeats), the same for both
    for _ in range(args.repeats + 2):
        walk.append(walk[-1] + (1e-3 * torch.randn(theta0.shape, generator=g)).to(theta0))
    integrators = {}
    keys = [("rk4", None), ("rk4_examples", torch.arange(n))]
    if args.groups:
        keys.append(("rk4_groups", torch.arange(n)))
    for key, index in keys:
        obj_k = objective()
        if args.per_class:
            obj_k = FullDatasetObjective(model, x, y, n_classes=splits.train.n_classes,
                                         chunk_size=args.chunk_size, per_class=True,
                                         chunking=args.per_class)
        integ = LCAIntegrator(obj_k, "rk4", per_example=index,
                              per_example_keep_bytes=args.keep_bytes)
        if key == "rk4_groups":
            integ.examples.set_groups(component_groups(model))
            if integ.examples.example_groups is None:
                raise SystemExit(f"--groups: {args.net} has no groups finer than its layers")
        integ.start(theta0)
        integrators[key] = (integ, iter(walk[1:]))

    def integrator_step(key: str):
        integ, path = integrators[key]
        return integ.step(next(path))

    engines = {check: PerExampleDirectional(objective(), check=check) for check in (True, False)}
    fns = {
        "floor": lambda: (obj.evaluate(mid), obj.evaluate(theta1)),
        "checked": lambda: (engines[True].evaluate(mid, delta),
                            engines[True].evaluate(theta1, delta)),
        "unchecked": lambda: (engines[False].evaluate(mid, delta),
                              engines[False].evaluate(theta1, delta)),
        "step": lambda: (engines[False].evaluate(mid, delta),
                         engines[False].evaluate(theta1, delta, keep=True),
                         engines[False].replay(delta)),
        "three": lambda: per_example_step_lca(model, x, y, theta0, theta1,
                                              chunk_size=args.chunk_size),
        "rk4": lambda: integrator_step("rk4"),
        "rk4_examples": lambda: integrator_step("rk4_examples"),
        "rk4_groups": lambda: integrator_step("rk4_groups"),
    }
    if not args.groups:
        del fns["rk4_groups"]
    if args.only_integrator:
        fns = {k: fns[k] for k in ("floor", "rk4", "rk4_examples", "rk4_groups") if k in fns}
    out = _interleaved(fns, args.repeats, args.device)
    # exactness in float32: Σ_n D[n, l] against N ∇_l L · v from the objective's gradient
    _, D = engines[False].evaluate(theta1, delta)
    layer = torch.as_tensor(param_table(model).param_layer_index(), device=delta.device)
    gv = layer_sums(obj.evaluate(theta1).grad * delta, layer, D.shape[1]) * n
    out["sum_error"] = float((D.sum(0) - gv).abs().max() / gv.abs().max())
    out["repaired"] = sorted({*engines[True].repaired, *engines[False].repaired})
    for e in engines.values():
        e.close()
    tap = integrators["rk4_examples"][0].examples
    out["extra_passes"], out["n_layers"] = tap.extra_passes, tap.n_layers
    if args.groups:
        gtap = integrators["rk4_groups"][0].examples
        out["n_groups"], out["group_extra_passes"] = len(gtap.example_groups), gtap.extra_passes
    return {"n": n, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", default="5000,55000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--dataset", default=None,
                        help="default mnist (modular-addition for the transformer); synthetic "
                             "for a smoke run")
    parser.add_argument("--net", default="mnist_fc", help="mnist_fc, lenet or transformer")
    parser.add_argument("--rgb32", action="store_true",
                        help="MNIST as 3x32x32 (for --net resnet20, a BatchNorm net)")
    parser.add_argument("--per-class", nargs="?", const="class", default=None,
                        choices=("class", "mixed"), help="integrators with per-class LCA")
    parser.add_argument("--keep-bytes", type=int, default=1 << 30,
                        help="per_example_keep_bytes (0: the start node is an extra pass)")
    parser.add_argument("--groups", action="store_true",
                        help="also an integrator with per-group (per-head) per-example values")
    parser.add_argument("--only-integrator", action="store_true",
                        help="time the floor and the integrator rows only")
    args = parser.parse_args()
    if args.dataset is None:
        args.dataset = "modular-addition" if args.net == "transformer" else "mnist"
    torch.set_num_threads(args.threads)
    print(f"{args.net} on {args.dataset}, float32, chunk {args.chunk_size}, "
          f"per-class {args.per_class or 'off'}, keep {args.keep_bytes} B, "
          f"{args.threads} thread(s), {args.device}, medians of {args.repeats}")
    labels = {"floor": "floor (2 gradients)", "checked": "2 nodes, check",
              "unchecked": "2 nodes, no check", "step": "rk4 step (2 nodes + replay)",
              "three": "3 nodes (per_example_step_lca)", "rk4": "integrator rk4",
              "rk4_examples": "integrator rk4, per_example=all",
              "rk4_groups": "integrator rk4, all + groups"}
    for n in (int(s) for s in args.train_size.split(",")):
        r = bench(n, args)
        print(f"N = {n}")
        for key, label in labels.items():
            if key not in r:
                continue
            print(f"  {label:<32} {r[key]:>9.3f} s  {r[key] / r['floor']:>5.2f}x")
        print(f"  per-example / plain rk4 per iteration: {r['rk4_examples'] / r['rk4']:.2f}x "
              f"(extra passes: {r['extra_passes']}); storage per row: {n} x {r['n_layers']} "
              f"x 4 B = {n * r['n_layers'] * 4 / 1024:.0f} KiB")
        if args.groups:
            print(f"  with the {r['n_groups']} groups / plain rk4: "
                  f"{r['rk4_groups'] / r['rk4']:.2f}x, / per_example=all: "
                  f"{r['rk4_groups'] / r['rk4_examples']:.2f}x (extra passes: "
                  f"{r['group_extra_passes']}); storage per row: {n} x {r['n_groups']} x 4 B = "
                  f"{n * r['n_groups'] * 4 / 1024:.0f} KiB")
        print(f"  float32 max |Σ_n D - N ∇L·v| / max |N ∇L·v| per layer: "
              f"{r['sum_error']:.1e}; layers repaired by the check: {r['repaired'] or 'none'}")


if __name__ == "__main__":
    main()
