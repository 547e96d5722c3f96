"""``lca-run --precision-check``: is this precision good enough per parameter?

The residual ΔL − ΣA can be tiny while individual allocations are wrong (errors cancel in the
sum), which would corrupt statistics like "% of parameters helping". So we compare the
per-parameter LCA of the configured precision with a float64 reference on the same steps.

:func:`precision_check_result` returns the comparison as a JSON-serialisable dict (for a
bundle); :func:`precision_check` formats it for the terminal; :func:`auto_precision_check` is
the check every CUDA run makes of its first iterations (None where there is nothing to check).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from compute.lca.backends import set_matmul_precision
from compute.lca.integrator import LCAIntegrator, layer_sums
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params
from compute.run.build import build_run
from compute.run.config import RunConfig
from compute.run.step import train_step

MAX_REL_ERROR = 1e-4
MIN_SIGN_AGREEMENT = 0.999
AUTO_CHECK_STEPS = 3  # iterations the automatic check of a CUDA run trains and compares
# The automatic check compares the two precisions on this many examples (rounded up to whole
# chunks, so the kernels see the run's chunk shape), not on the whole set: what it tests is the
# kernels' arithmetic, and on an H200 the check of a ResNet-20 run over all 55,000 images did
# not finish in 80 s where a whole run with the check on 2,000 took 16 s (docs/benchmarks.md).
AUTO_CHECK_EXAMPLES = 2000


def _check_subset(n_total: int, chunk_size: int, max_examples: int | None) -> torch.Tensor | None:
    """Evenly spaced example indices for a check on at most ``max_examples`` (whole chunks).

    Returns:
        (n,) int64 indices, or None to use every example.
    """
    if max_examples is None:
        return None
    n = min(n_total, -(-max_examples // chunk_size) * chunk_size)
    if n >= n_total:
        return None
    return torch.arange(n, dtype=torch.int64) * n_total // n  # (n,) spread over the set


def precision_check_result(cfg: RunConfig, steps: int = 3,
                           max_examples: int | None = None) -> dict:
    """Train ``steps`` iterations of ``cfg`` and compare each step's LCA with float64.

    The run is rebuilt from ``cfg`` (its own model, optimizer and data, nothing shared with a
    run in progress) without per-class or validation LCA. On CUDA the float32 precision flags
    are first set as the run sets them (``cfg.allow_tf32`` if the config has it, else full
    fp32) and the flags read back are part of the result.

    Args:
        cfg: the run settings.
        steps: iterations to compare.
        max_examples: compare the LCA of the loss over this many evenly spaced training
            examples (rounded up to whole chunks) instead of all of them; the run still trains
            on its own minibatches. None: all examples.

    Returns:
        JSON-serialisable: ``precision``, ``reference`` ("float64"), ``net``, ``method``,
        ``device``, ``steps``, ``examples`` (how many the comparison used) and
        ``examples_total``; per step ``rel_error`` (relative L2 error of the per-parameter
        LCA vector), ``sign_agreement`` (share of parameters with nonzero reference LCA whose
        sign matches) and ``signs_flipped`` (count); ``max_rel_error``,
        ``min_sign_agreement``; ``layer_rel_error`` (per layer, the largest relative L2 error
        over the steps); the thresholds ``max_rel_error_allowed`` (1e-4) and
        ``min_sign_agreement_required`` (0.999); ``passed``; and ``backend`` (the precision
        flags, see ``compute.lca.backends.precision_flags``).
    """
    backend = set_matmul_precision(cfg.device, bool(getattr(cfg, "allow_tf32", False)))
    run = build_run(dataclasses.replace(cfg, per_class=False, val_lca=False))
    obj, lca = run.train_lca.objective, run.train_lca
    x, y = obj.x, obj.y
    # whole groups (BatchNorm) or whole chunks of a fixed --chunk-size; auto sizes its own
    granule = obj.bn_group or (cfg.chunk_size if isinstance(cfg.chunk_size, int) else 1)
    idx = _check_subset(len(y), granule, max_examples)
    if idx is not None:
        x, y = x[idx.to(x.device)], y[idx.to(y.device)]  # indexing keeps an NHWC layout
        obj = FullDatasetObjective(run.model, x, y, n_classes=obj.n_classes,
                                   chunk_size=obj.chunk_request, bn_group=obj.bn_group,
                                   chunking=obj.chunking, compile=cfg.compile)
        lca = LCAIntegrator(obj, cfg.method, tol=cfg.tol, max_halvings=cfg.max_halvings)
    ref_obj = FullDatasetObjective(copy.deepcopy(run.model).double(), x.double(), y,
                                   n_classes=obj.n_classes, chunk_size=obj.chunk_request,
                                   bn_group=obj.bn_group, chunking=obj.chunking)
    ref = LCAIntegrator(ref_obj, cfg.method, tol=cfg.tol, max_halvings=cfg.max_halvings)
    theta = flat_params(run.model)
    lca.start(theta)
    ref.start(theta.double())
    rel, agree, flipped = [], [], []
    layer_err = torch.zeros(run.table.n_layers, dtype=torch.float64)
    for t in range(steps):
        train_step(run, t)
        theta = flat_params(run.model)
        a = lca.step(theta).lca.double()
        b = ref.step(theta.double()).lca
        rel.append(float((a - b).norm() / b.norm().clamp_min(1e-300)))
        nz = b != 0
        same = torch.sign(a[nz]) == torch.sign(b[nz])
        agree.append(float(same.double().mean()) if bool(nz.any()) else 1.0)
        flipped.append(int((~same).sum()))
        num = layer_sums((a - b) ** 2, run.layer_idx, run.table.n_layers).sqrt().cpu()
        den = layer_sums(b**2, run.layer_idx, run.table.n_layers).sqrt().cpu()
        layer_err = torch.maximum(layer_err, num / den.clamp_min(1e-300))
    max_rel, min_agree = max(rel, default=0.0), min(agree, default=1.0)
    return {
        "precision": cfg.precision, "reference": "float64", "net": cfg.net,
        "method": cfg.method, "device": cfg.device, "steps": steps,
        "examples": len(y), "examples_total": len(run.train_lca.objective.y),
        "rel_error": rel, "sign_agreement": agree, "signs_flipped": flipped,
        "max_rel_error": max_rel, "min_sign_agreement": min_agree,
        "layer_rel_error": dict(zip(run.table.layer_names, layer_err.tolist(), strict=True)),
        "max_rel_error_allowed": MAX_REL_ERROR, "min_sign_agreement_required": MIN_SIGN_AGREEMENT,
        "passed": max_rel <= MAX_REL_ERROR and min_agree >= MIN_SIGN_AGREEMENT,
        "backend": backend,
    }


def precision_check(cfg: RunConfig, steps: int = 3) -> str:
    """Run ``steps`` iterations and compare each step's LCA with a float64 recomputation.

    Returns:
        A printable report with the relative L2 error, the sign agreement and PASS/FAIL
        against the thresholds (relative error ≤ 1e-4, sign agreement ≥ 99.9 %).
    """
    r = precision_check_result(cfg, steps)
    lines = [f"precision check: {cfg.precision} vs float64, {cfg.net}, method {cfg.method}, "
             f"{r['examples']:,} examples"]
    if r["device"].startswith("cuda"):
        lines.append(f"  CUDA float32 precision: matmul {r['backend']['matmul']}, "
                     f"conv {r['backend']['conv']}")
    for t, (rel, agree) in enumerate(zip(r["rel_error"], r["sign_agreement"], strict=True)):
        lines.append(f"  step {t}: relative L2 error {rel:.2e}, sign agreement {100 * agree:.3f} %")
    lines.append(f"{'PASS' if r['passed'] else 'FAIL'} (thresholds: error <= {MAX_REL_ERROR:g}, "
                 f"sign agreement >= {100 * MIN_SIGN_AGREEMENT:g} %)")
    return "\n".join(lines)


def auto_precision_check(cfg: RunConfig, steps: int = AUTO_CHECK_STEPS) -> dict | None:
    """The precision check every CUDA run makes of its first ``steps`` iterations.

    It compares the LCA of the loss over :data:`AUTO_CHECK_EXAMPLES` evenly spaced training
    examples, so its cost does not grow with the dataset; ``lca-run --precision-check`` uses
    them all.

    Returns:
        :func:`precision_check_result` for a float32 run on CUDA; None for CPU runs and
        float64 runs (nothing to compare against).
    """
    if not cfg.device.startswith("cuda") or cfg.precision == "float64":
        return None
    return precision_check_result(cfg, steps, max_examples=AUTO_CHECK_EXAMPLES)
