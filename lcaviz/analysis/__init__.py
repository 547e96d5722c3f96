"""Analyses of LCA run bundles from the paper (numpy / scipy / pandas only; never torch).

One module per idea: ``helping`` (Table 1, Fig. 3), ``distributions`` and ``weibull`` (heavy
tails), ``layers`` (layers that hurt), ``calibration`` (a subset or sparse run against the
full training loss), ``counterfactual`` (the causal test of helping), ``oscillation``
(direction changes, from a trajectory or from lca-run's counters), ``lca_error`` (quadrature
error per layer, Table S1, conservation), ``synchrony`` (synchronised learning and the
random-shift test), ``summary`` (all of them). ``scan`` is the
single streaming pass over the (R, P) matrix that the distribution analyses share.
"""

from lcaviz.analysis.calibration import calibration, calibration_summary
from lcaviz.analysis.counterfactual import counterfactual_summary, counterfactual_table
from lcaviz.analysis.distributions import lca_histograms, magnitude_quantile, moments, tail_mass
from lcaviz.analysis.helping import (
    help_series,
    layer_helping,
    overall_helping,
    param_help_fraction,
    param_help_histogram,
)
from lcaviz.analysis.layers import compare_runs, cumulative_layer_lca, layer_totals
from lcaviz.analysis.lca_error import conservation, error_table, rule_errors, table_s1
from lcaviz.analysis.oscillation import (
    counter_oscillation,
    direction_changes,
    movement_oscillation,
)
from lcaviz.analysis.scan import ValueScan, scan_values
from lcaviz.analysis.summary import jsonable, summarize, summary_frame
from lcaviz.analysis.synchrony import peak_table, shift_test, synchrony, top_peaks
from lcaviz.analysis.weibull import WeibullFit, fit_weibull, weibull_fits, weibull_mle

__all__ = [
    "ValueScan", "WeibullFit", "calibration", "calibration_summary", "compare_runs",
    "conservation", "counter_oscillation", "counterfactual_summary", "counterfactual_table",
    "cumulative_layer_lca", "direction_changes", "error_table", "fit_weibull", "rule_errors",
    "table_s1", "help_series", "jsonable", "layer_helping", "layer_totals", "lca_histograms",
    "magnitude_quantile", "moments", "movement_oscillation", "overall_helping",
    "param_help_fraction", "param_help_histogram", "peak_table", "scan_values", "shift_test",
    "summarize", "summary_frame", "synchrony", "tail_mass", "top_peaks", "weibull_fits",
    "weibull_mle",
]
