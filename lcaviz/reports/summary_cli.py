"""``lcaviz summary RUN.h5 [--json]``: every analysis of one run, as text or JSON.

``lcaviz.cli`` dispatches the ``summary`` subcommand here. Exit codes: 0 done, 2 unreadable
bundle or bad arguments (the message names the file and the problem; no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from lcaviz.bundle import BundleError


def _fmt(x, spec: str = ".4g") -> str:
    return "n/a" if x is None else format(x, spec)


def _weibull_line(label: str, w: dict) -> str:
    return (f"  {label:<6} k = {_fmt(w['k'])}, λ = {_fmt(w['scale'])}, "
            f"KS = {_fmt(w['ks'], '.3f')}, best by AIC: {w['best'] or 'n/a'} (n = {w['n']})")


def _name_width(names) -> int:
    """Width of the name column: the longest name and a gap (at least 16), so that long
    layer names (``blocks.0.mlp.fc_out``) do not push their row's numbers out of line."""
    return max([16] + [len(str(n)) + 2 for n in names])


def _counter_lines(c: dict) -> list[str]:
    out = [f"moves    a weight changes direction once every "
           f"{_fmt(c['moves']['iters_per_change'], '.2f')} iterations; its full gradient "
           f"changes sign once every {_fmt(c['gradients']['iters_per_change'], '.2f')} "
           f"(counters over {c['n_iters']} iterations"
           + (f" of {c['n_iters_run']}, as of the last checkpoint" if c["n_iters"] <
              c["n_iters_run"] else "") + "; paper, CIFAR-ResNet: 6.7 and 9.5)"]
    w = _name_width(lay["layer"] for lay in c["layers"])
    out += [f"         {lay['layer']:<{w}} moves every "
            f"{_fmt(lay['moves']['iters_per_change'], '.2f'):>7}, gradient sign every "
            f"{_fmt(lay['gradients']['iters_per_change'], '.2f'):>7}" for lay in c["layers"]]
    return out


def _conservation_lines(k: dict) -> list[str]:
    out = [f"conserve |Σ residual| / |Σ ΔL| = {_fmt(k['cum_error'], '.3%')} (paper: < 1 %), "
           f"Σ|residual| / Σ|ΔL| = {_fmt(k['cum_abs_error'], '.3%')}, max |residual| = "
           f"{_fmt(k['max_abs_residual'], '.2e')}"]
    if k.get("hit_max_halvings") is not None:
        rule = f"|residual| < {k['tol']}" + (f" and <= {k['rtol']}·|ΔL|" if k["rtol"] else "")
        n = k["hit_max_halvings"]
        out.append(f"         {'WARNING: ' if n else ''}{n} of {k['n_iters']} iterations hit "
                   f"--max-halvings {k['max_halvings']} without meeting {rule}")
    return out


def _error_lines(e: dict) -> list[str]:
    out = ["", f"error    stored LCA vs the same step on 4x the Simpson intervals, "
           f"{e['n_iters']} iterations (every {e['every']}):",
           f"{'layer':<16}{'median rel. err':>16}{'% signs flipped':>17}"
           f"{'Σ|err|/Σ|A|':>13}{'layer-sum err':>15}"]
    out += [f"{lay['layer']:<16}{_fmt(lay['median_rel'], '.2e'):>16}"
            f"{_fmt(lay['pct_flipped'], '.3f'):>17}{_fmt(lay['rel_l1'], '.2e'):>13}"
            f"{_fmt(lay['sum_rel'], '.2e'):>15}" for lay in e["layers"]]
    out.append("Table S1 first order vs rk4 against the reference (Σ|err|/Σ|A|, % flipped):")
    out += [f"         {r['layer']:<16} {_fmt(r['rel_l1_first_order'], '.2e')} vs "
            f"{_fmt(r['rel_l1_rk4'], '.2e')} ({_fmt(r['rel_l1_ratio'], '.0f')}x), "
            f"{_fmt(r['pct_flipped_first_order'], '.2f')} % vs "
            f"{_fmt(r['pct_flipped_rk4'], '.2f')} %" for r in e["table_s1"]]
    return out


def format_report(s: dict) -> str:
    """Human-readable report of a :func:`lcaviz.analysis.summarize` result."""
    r, h, t = s["run"], s["helping"], s["tail"]
    nw = _name_width(lay["name"] for lay in s["layers"])
    out = [
        f"run      {r['path']}",
        f"         {r['net']} on {r['dataset']}, {r['optimizer']}, method {r['method']}, "
        f"status {r['status']}" + (f" ({r['status_reason']})" if r["status_reason"] else ""),
        f"size     T = {r['n_iters']} iterations, P = {r['n_params']:,} parameters, "
        f"L = {r['n_layers']} layers, C = {r['n_classes']} classes, rows {r['rows']}",
        f"loss     {_fmt(r['initial_loss'])} -> {_fmt(r['final_loss'])} "
        f"(ΣLCA = {_fmt(r['lca_total'])}, max |residual| = {_fmt(r['residual_abs_max'])})",
        "",
        f"helping  {_fmt(h['pct_help'], '.2f')} % of nonzero LCA help per iteration "
        f"(Table 1 definition), {_fmt(h['pct_zero'], '.2f')} % of parameters exactly zero",
        f"values   distributions, tails and Weibull fits use {s['values']['rows']}"
        + ("" if len(s["values"]["layers"]) == r["n_layers"] else
           f", layers {', '.join(s['values']['layers'])} only (--lca-layers)"),
        f"tails    {_fmt(t['frac_beyond'], '.3%')} of values beyond 3σ vs "
        f"{_fmt(t['gaussian_frac'], '.3%')} for a Gaussian ({_fmt(t['ratio'], '.2f')}x); "
        f"their share of Σ|LCA| is {_fmt(t['contribution_ratio'], '.2f')}x the Gaussian's",
        "weibull  (|LCA|, loc = 0)",
        _weibull_line("help", s["weibull"]["help"]),
        _weibull_line("hurt", s["weibull"]["hurt"]),
        "",
        f"{'layer':<{nw}}{'size':>12}{'total LCA':>14}{'per param':>12}{'% help':>9}"
        f"{'% zero':>9}{'k help':>8}{'k hurt':>8}",
    ]
    for lay, w in zip(s["layers"], s["weibull"]["layers"], strict=True):
        flag = "  hurts" if lay["hurts"] else ""
        out.append(f"{lay['name']:<{nw}}{lay['size']:>12,}{_fmt(lay['total'], '.4g'):>14}"
                   f"{_fmt(lay['per_param'], '.3g'):>12}{_fmt(lay['pct_help'], '.2f'):>9}"
                   f"{_fmt(lay['pct_zero'], '.2f'):>9}{_fmt(w['help']['k'], '.3f'):>8}"
                   f"{_fmt(w['hurt']['k'], '.3f'):>8}{flag}")
    tv = s.get("train_val")
    if tv:
        out += ["", f"{'layer':<{nw}}{'LCA train':>14}{'LCA validation':>16}"]
        for row in tv:
            flag = ("  helps training, hurts validation" if row["helps_train_hurts_val"] else
                    "  hurts training, helps validation" if row["hurts_train_helps_val"] else "")
            out.append(f"{row['name']:<{nw}}{_fmt(row['train'], '.4g'):>14}"
                       f"{_fmt(row['val'], '.4g'):>16}{flag}")
    o, c = s.get("oscillation"), s.get("oscillation_counters")
    out.append("")
    if c:
        out += _counter_lines(c)
    if o:
        out.append(f"moves    (trajectory) weights change direction once every "
                   f"{_fmt(o['iters_per_change'], '.2f')} iterations (mean run "
                   f"{_fmt(o['mean_run_length'], '.2f')})"
                   + ("" if c else f"; {o['gradient_note']}"))
    elif not c:
        out.append("moves    no oscillation counters (older run) and no trajectory stored")
    if s.get("conservation"):
        out += _conservation_lines(s["conservation"])
    if s.get("lca_error"):
        out += _error_lines(s["lca_error"])
    if k := s.get("counterfactual"):
        out.append(f"causal   {k['n']} sampled steps: the helping coordinates alone lower the "
                   f"loss in {_fmt(k['pct_help_lowers'], '.0f')} %, the hurting ones alone raise "
                   f"it in {_fmt(k['pct_hurt_raises'], '.0f')} %; ΔL/ΣLCA of each part (median) "
                   f"{_fmt(k['median_ratio_help'], '.2f')} / {_fmt(k['median_ratio_hurt'], '.2f')}"
                   "; interaction |ΔL − Σ parts| / |ΔL| "
                   f"{_fmt(k['median_abs_interaction'], '.2f')}")
    y = s.get("synchrony")
    if y:
        out.append(f"sync     top-{y['k']} learning moments ({y['source']}): "
                   f"{_fmt(y['actual_mean_per_class'], '.2f')} aligned per class vs "
                   f"{_fmt(y['baseline_mean_per_class'], '.2f')} when layers are shifted by up to "
                   f"±{y['max_shift']} (N = {y['n_resamples']}), p = {_fmt(y['p_value'], '.3g')}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lcaviz summary``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="lcaviz summary",
                                 description="Summarise the LCA analyses of one run bundle.")
    ap.add_argument("bundle", help="run bundle (.h5)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weibull-sample", type=int, default=200_000)
    ap.add_argument("--sync-k", type=int, default=20)
    ap.add_argument("--shift-resamples", type=int, default=1000)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # argparse already printed the usage message
        return int(e.code or 0) and 2
    from lcaviz.analysis.summary import summarize  # scipy import only when needed

    try:
        s = summarize(args.bundle, weibull_sample=args.weibull_sample, sync_k=args.sync_k,
                      shift_resamples=args.shift_resamples, seed=args.seed)
    except BundleError as e:
        print(f"lcaviz summary: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s, indent=1, allow_nan=False) if args.json else format_report(s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
