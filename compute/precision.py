"""``lca-run --precision-check``: is this precision good enough per parameter?

The residual ΔL − ΣA can be tiny while individual allocations are wrong (errors cancel in the
sum), which would corrupt statistics like "% of parameters helping". So we compare the
per-parameter LCA of the configured precision with a float64 reference on the same steps.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from compute.config import RunConfig
from compute.lca import LCAIntegrator
from compute.objective import FullDatasetObjective
from compute.params import flat_params
from compute.train import build_run, train_step

MAX_REL_ERROR = 1e-4
MIN_SIGN_AGREEMENT = 0.999


def precision_check(cfg: RunConfig, steps: int = 3) -> str:
    """Run ``steps`` iterations and compare each step's LCA with a float64 recomputation.

    Returns:
        A printable report with the relative L2 error, the sign agreement and PASS/FAIL
        against the thresholds (relative error ≤ 1e-4, sign agreement ≥ 99.9 %).
    """
    run = build_run(dataclasses.replace(cfg, per_class=False, val_lca=False))
    obj = run.train_lca.objective
    ref_obj = FullDatasetObjective(copy.deepcopy(run.model).double(), obj.x.double(), obj.y,
                                   n_classes=obj.n_classes, chunk_size=cfg.chunk_size,
                                   chunking=obj.chunking)
    ref = LCAIntegrator(ref_obj, cfg.method, tol=cfg.tol, max_halvings=cfg.max_halvings)
    theta = flat_params(run.model)
    run.train_lca.start(theta)
    ref.start(theta.double())
    lines = [f"precision check: {cfg.precision} vs float64, {cfg.net}, method {cfg.method}"]
    ok = True
    for t in range(steps):
        train_step(run, t)
        theta = flat_params(run.model)
        a = run.train_lca.step(theta).lca.double()
        b = ref.step(theta.double()).lca
        rel = float((a - b).norm() / b.norm().clamp_min(1e-300))
        nz = b != 0
        agree = float((torch.sign(a[nz]) == torch.sign(b[nz])).double().mean())
        ok &= rel <= MAX_REL_ERROR and agree >= MIN_SIGN_AGREEMENT
        lines.append(f"  step {t}: relative L2 error {rel:.2e}, sign agreement {100 * agree:.3f} %")
    lines.append(f"{'PASS' if ok else 'FAIL'} (thresholds: error <= {MAX_REL_ERROR:g}, "
                 f"sign agreement >= {100 * MIN_SIGN_AGREEMENT:g} %)")
    return "\n".join(lines)
