"""The paper's Table S1 (first order vs RK4 approximation error) from bundles made with
``lca-run --lca-error-every K``.

    python scripts/table_s1.py RUN.h5 [RUN2.h5 ...] [--rules first_order,rk4]

For each bundle: a Markdown table with one row per layer and one for the whole network, giving
each rule's error against the same steps integrated on 4× the Simpson intervals (median
relative error per parameter, Σ|error| / Σ|A_ref|, % of flipped signs, error of the layer's
LCA; definitions in ``lcaviz.analysis.lca_error``) and the ratio of the two rules.
"""

from __future__ import annotations

import argparse
import sys

from lcaviz.analysis.lca_error import table_s1, table_s1_markdown
from lcaviz.bundle import BundleError, RunBundle


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", help="run bundles made with --lca-error-every")
    ap.add_argument("--rules", default="first_order,rk4",
                    help="two of first_order, trapezoid, rk4, stored (default: %(default)s)")
    a = ap.parse_args(argv)
    rules = tuple(r.strip() for r in a.rules.split(","))
    if len(rules) != 2:
        ap.error("--rules takes two rules, e.g. first_order,rk4")
    status = 0
    for path in a.bundles:
        try:
            with RunBundle.open(path) as b:
                t = table_s1(b, rules)
                if t is None:
                    print(f"{path}: no error estimates (make the run with --lca-error-every K)",
                          file=sys.stderr)
                    status = 2
                    continue
                s = b.lca_error_stats()
                print(f"### {path}\n\n{b.config.get('net')} on {b.config.get('dataset')}, "
                      f"method {b.method}, {b.n_iters} iterations; {len(s['iters'])} error "
                      f"iterations (every {s['every']}), reference: "
                      f"{int(s['intervals'].max()) if len(s['iters']) else 0} Simpson "
                      f"intervals\n\n{table_s1_markdown(t, rules)}\n")
        except (BundleError, ValueError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
