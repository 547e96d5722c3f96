"""The error table of the cheaper LCA modes (issue 17; results in docs/approximations.md).

    nice -n 5 python benchmarks/bench_approx.py --net mnist_fc --iters 200 \
        --json docs/approx_mnist_fc.json
    nice -n 5 python benchmarks/bench_approx.py --net lenet --train-size 2000 \
        --batch-size 100 --iters 200 --json docs/approx_lenet.json

Every mode is a real ``lca-run`` (``compute.run.train.run_lca``) with the same seed, so all see
the same θ path (the optimizer never looks at the LCA; checked: every run's minibatch losses
equal the exact run's, bit for bit). Compared with the *exact* run (rk4, every iteration, the
whole training set): subsets of 1, 5, 10, 25 and 50 % (fixed and resampled), ``--lca-every`` 2, 5
and 10, first order, trapezoid and adaptive (``--tol 1e-3 --rtol 1e-2``). How far rk4 itself
is from a finer quadrature comes from the exact run's ``--lca-error-every 10`` (each rule
against composite Simpson on 4 intervals at iterations 0, 10, 20, ...; printed as a second
table). Per mode:

* ``rel_err``: median over allocated iterations t of ‖A_t − B_t‖₂ / ‖B_t‖₂ (per parameter);
* ``sign``: % of parameters with B ≠ 0 whose LCA has the same sign, pooled over iterations;
* ``cum_err``: ‖s·Σ_t A_t − Σ_t B_t‖₂ / ‖Σ_t B_t‖₂, the run's per-parameter total, where
  s = T / (allocated iterations) extrapolates a ``--lca-every`` run (s = 1 otherwise);
* ``d_help``: % helping (Table 1: mean over allocated iterations of helped / nonzero) minus B's,
  in points;
* ``layer_err``: max over layers of |s·C_l − C^B_l| / |C^B_l|, C_l the layer's cumulative LCA;
* ``k_help``, ``k_hurt``: relative error of the run-wide Weibull shape of |helping| and
  |hurting| LCA (200,000-value samples, seed 0);
* ``sync``: aligned moments per class (top 20 peaks, 10 classes) of the mode, and B's;
* ``gap``: |cumulative LCA − full-loss change| / |full-loss change| at θ_T
  (``--full-loss-every 20``), for the subset and sparse modes (a ``--lca-every K`` run's
  cumulative LCA extrapolated × T / allocated iterations);
* ``cost``: mean seconds per iteration (train step + LCA + record; ``timing/seconds``) over
  the exact rk4 run's (its error-estimate iterations left out), and the same from the count
  of full-dataset gradients (``grads``; an exact rk4 iteration evaluates 2; the occasional
  forward-only full loss is left out).

Timings are from a shared 2-core CPU (other jobs running), so the gradient count is given
beside them.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.analysis import overall_helping, synchrony, weibull_fits
from lcaviz.analysis.calibration import calibration_summary
from lcaviz.analysis.lca_error import rule_errors
from lcaviz.bundle import RunBundle

FRACTIONS = ("1%", "5%", "10%", "25%", "50%")
EVERY = (2, 5, 10)


EXACT = "exact rk4"


def modes(base: RunConfig) -> list[tuple[str, str, RunConfig]]:
    """(name, baseline, config) of every mode, the baseline first."""
    out = [(EXACT, "", replace(base, lca_error_every=10))]
    approx = replace(base, full_loss_every=20)
    for f in FRACTIONS:
        out.append((f"subset {f} fixed", EXACT, replace(approx, lca_data=f)))
    for f in FRACTIONS:
        out.append((f"subset {f} resampled", EXACT,
                    replace(approx, lca_data=f, lca_data_resample=True)))
    for k in EVERY:
        out.append((f"--lca-every {k}", EXACT, replace(approx, lca_every=k)))
    for m in ("first_order", "trapezoid"):
        out.append((m, EXACT, replace(base, method=m)))
    out.append(("adaptive (tol 1e-3, rtol 1e-2)", EXACT,
                replace(base, method="adaptive", tol=1e-3, rtol=1e-2)))
    return out


def slug(name: str) -> str:
    """A file name for a mode: ``"subset 5% fixed"`` -> ``"subset_5pct_fixed"``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("%", "pct")).strip("_")


def _complete(path: Path, cfg: RunConfig) -> bool:
    """A finished bundle of exactly this config is at ``path``."""
    if not path.exists():
        return False
    try:
        with RunBundle.open(path) as b:
            same = all(b.config.get(k) == v for k, v in cfg.to_dict().items()
                       if k not in ("betas", "lca_layers"))
            return b.status == "complete" and same
    except Exception:  # noqa: BLE001 - anything unreadable is made again
        return False


def grads_per_iter(cfg: RunConfig, splits: np.ndarray, n_frac: float) -> float:
    """Full-dataset gradients per iteration (n/N of one for a subset of n)."""
    per_step = {"first_order": 1, "trapezoid": 1, "rk4": 2}.get(cfg.method)
    if per_step is None:  # adaptive: 2·splits nodes, the end one reused
        per_step = float(np.mean(2 * np.maximum(splits[splits > 0], 1)))
    if cfg.lca_every > 1 or cfg.lca_data_resample:
        per_step += 1  # the start is evaluated again (no endpoint reuse)
    return per_step * n_frac / cfg.lca_every


def read(path: Path) -> dict:
    """Everything the comparisons need from one bundle."""
    with RunBundle.open(path) as b:
        T = b.n_iters
        its = b.lca_iters()
        w = b.row_windows
        rows = b.rows()  # (R, P) float32; one allocated iteration per row
        first = its[np.searchsorted(its, w[:, 0])] if b.is_gapped else w[:, 0]
        wb = weibull_fits(b, by_layer=False)
        sync = synchrony(b, k=20, n_resamples=0)
        cfg = b.config
        return {
            "T": T, "iters": its, "row_iter": first, "rows": rows,
            "layer_total": b.lca_layer().sum(axis=0), "layer_names": b.layer_names,
            "pct_help": overall_helping(b)["pct_help"],
            "k_help": wb["help"].k, "k_hurt": wb["hurt"].k,
            "sync": None if sync is None else sync["actual_mean_per_class"],
            "seconds": float(np.mean(np.delete(b.seconds(), b.lca_error_iters()
                                               if b.has_lca_error else []))),
            "splits": b.splits(), "rule_errors": rule_errors(b),
            "mb": b.loss_minibatch(), "calib": calibration_summary(b),
            "n_frac": cfg.get("lca_data_n", T) / cfg.get("lca_data_of", T) if "lca_data_n"
            in cfg else 1.0,
        }


def _gap(c: dict | None) -> float | None:
    """|cumulative LCA − full loss change| / |full loss change| at the last full-loss point;
    a ``--lca-every`` run's total extrapolated (× t / allocated steps)."""
    if c is None:
        return None
    total = c["lca_total_scaled"] if c["lca_every"] > 1 else c["lca_total"]
    return abs(total - c["full_change"]) / abs(c["full_change"])


def compare(a: dict, ref: dict, exact: dict) -> dict:
    """The table's columns for run ``a`` against baseline ``ref`` (same trajectory); its cost
    against the ``exact`` rk4 run."""
    if not np.array_equal(a["mb"], ref["mb"]):
        raise AssertionError("the runs did not follow the same trajectory")
    B = ref["rows"][a["row_iter"]].astype(np.float64)  # the baseline at the same iterations
    A = a["rows"].astype(np.float64)
    norms = np.linalg.norm(B, axis=1)
    rel = np.linalg.norm(A - B, axis=1) / np.where(norms > 0, norms, np.nan)
    nz = B != 0
    s = ref["T"] / max(len(a["iters"]), 1)
    cum, cum_ref = s * A.sum(0), ref["rows"].astype(np.float64).sum(0)
    layer = np.abs(s * a["layer_total"] - ref["layer_total"]) / np.abs(ref["layer_total"])
    return {
        "rel_err": float(np.nanmedian(rel)),
        "sign": 100 * float((np.sign(A[nz]) == np.sign(B[nz])).mean()),
        "cum_err": float(np.linalg.norm(cum - cum_ref) / np.linalg.norm(cum_ref)),
        "d_help": a["pct_help"] - ref["pct_help"],
        "layer_err": float(layer.max()), "layer_err_each": layer.tolist(),
        "k_help": abs(a["k_help"] / ref["k_help"] - 1),
        "k_hurt": abs(a["k_hurt"] / ref["k_hurt"] - 1),
        "sync": a["sync"], "sync_ref": ref["sync"],
        "gap": _gap(a["calib"]),
        "cost": a["seconds"] / exact["seconds"],
    }


def markdown(rows: list[dict]) -> str:
    def f(x, spec):
        return "–" if x is None or not np.isfinite(x) else format(x, spec)

    out = ["| mode | baseline | rel. error | same sign | total rel. error | Δ % helping | "
           "layer error (max) | Weibull k help / hurt | sync / baseline | gap to full loss | "
           "cost (time) | cost (gradients) |", "|" + "---|" * 12]
    for r in rows:
        c = r["cmp"]
        out.append(
            f"| {r['mode']} | {r['baseline']} | {f(c['rel_err'], '.2e')} | "
            f"{f(c['sign'], '.2f')} % | {f(c['cum_err'], '.2e')} | {f(c['d_help'], '+.2f')} | "
            f"{f(100 * c['layer_err'], '.2f')} % | {f(100 * c['k_help'], '.1f')} / "
            f"{f(100 * c['k_hurt'], '.1f')} % | {f(c['sync'], '.1f')} / "
            f"{f(c['sync_ref'], '.1f')} | {f(None if c['gap'] is None else 100 * c['gap'], '.2f')}"
            f"{'' if c['gap'] is None else ' %'} | {f(c['cost'], '.3f')} | "
            f"{f(r['grads_ratio'], '.3f')} |")
    return "\n".join(out)


def rules_markdown(df) -> str:
    """Per rule and layer: median relative error, % signs flipped, L1 relative error."""
    out = ["| rule | layer | median rel. error | % signs flipped | L1 rel. error |",
           "|---|---|---|---|---|"]
    for r in df[df.rule != "stored"].itertuples():
        out.append(f"| {r.rule} | {r.layer} | {r.median_rel:.2e} | {r.pct_flipped:.3f} | "
                   f"{r.rel_l1:.2e} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="mnist_fc", choices=("mnist_fc", "lenet", "resnet20"))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--rgb32", action="store_true", help="MNIST padded to 3x32x32 (ResNet-20)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--only", default=None, help="comma-separated mode names (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--keep", type=Path, default=None, help="keep the bundles in this folder")
    a = ap.parse_args(argv)
    base = RunConfig(net=a.net, dataset=a.dataset, data_root=a.data_root, rgb32=a.rgb32,
                     train_size=a.train_size, val_size=1000, batch_size=a.batch_size,
                     iters=a.iters, lr=a.lr, momentum=0.9, method="rk4", seed=0,
                     device=a.device, chunk_size=a.chunk_size, per_class=a.net != "resnet20",
                     checkpoint_every=10**6, checkpoint_seconds=1e9)
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench_approx_"))
    work.mkdir(parents=True, exist_ok=True)
    only = set(a.only.split(",")) if a.only else None
    data, results = {}, []
    for name, baseline, cfg in modes(base):
        if only and name not in only and baseline:
            continue
        path = work / f"{slug(name)}.h5"
        t0 = time.perf_counter()
        if not _complete(path, cfg):  # a kept bundle of the same config is reused
            run_lca(cfg, path, overwrite=True, progress=False)
        wall = time.perf_counter() - t0
        d = read(path)
        if not baseline:
            data[name] = d
            data[name]["wall"] = wall
            print(f"{name}: {wall:.0f} s, {d['seconds']:.3f} s/iteration", flush=True)
            continue
        g = grads_per_iter(cfg, d["splits"], d["n_frac"])
        row = {"mode": name, "baseline": baseline, "wall_s": wall, "grads": g,
               "grads_ratio": g / 2.0,  # an exact rk4 iteration: 2 full-dataset gradients
               "cmp": compare(d, data[baseline], data["exact rk4"])}
        results.append(row)
        print(f"{name}: {wall:.0f} s; {json.dumps(row['cmp'])}", flush=True)
        if a.keep is None:
            path.unlink()
    print(markdown(results))
    quad = data[EXACT]["rule_errors"]
    if quad is not None:
        print("\nThe exact run's quadrature against composite Simpson on 4 intervals "
              "(--lca-error-every 10):")
        print(rules_markdown(quad))
    if a.json:
        meta = {"net": a.net, "train_size": a.train_size, "iters": a.iters,
                "device": a.device,
                "batch_size": a.batch_size, "lr": a.lr,
                "baselines": {k: {"seconds": v["seconds"], "wall": v["wall"],
                                  "pct_help": v["pct_help"], "k_help": v["k_help"],
                                  "k_hurt": v["k_hurt"], "sync": v["sync"],
                                  "layer_total": v["layer_total"].tolist(),
                                  "layer_names": v["layer_names"],
                                  "rule_errors": None if v["rule_errors"] is None else
                                  v["rule_errors"].to_dict(orient="records")}
                              for k, v in data.items()}}
        a.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1,
                                     default=float) + "\n")


if __name__ == "__main__":
    main()
