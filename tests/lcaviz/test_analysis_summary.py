"""summarize / summary_frame and the ``lcaviz summary`` command."""

from __future__ import annotations

import json

import pytest

from lcaviz.analysis import summarize, summary_frame
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.reports.summary_cli import main
from tests.lcaviz._bundle_factory import SMALL_LAYERS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_bundle(tmp_path_factory.mktemp("r") / "run.h5", n_iters=80,
                                  layers=SMALL_LAYERS, save_trajectory=True, sync_peaks=5,
                                  help_fraction=0.6, stride=2, seed=9)


def test_summarize_is_strict_json_and_complete(run):
    s = summarize(run, weibull_sample=5000, shift_resamples=200)
    text = json.dumps(s, allow_nan=False)
    assert json.loads(text) == s
    assert set(s) == {"run", "values", "helping", "param_help_histogram", "distribution",
                      "tail", "weibull", "layers", "oscillation", "synchrony", "settings",
                      "oscillation_counters", "conservation", "lca_error", "train_val",
                      "counterfactual"}
    assert s["counterfactual"] is None  # made without --counterfactual-every
    # a synthetic bundle has none of lca-run's counters or error estimates
    assert s["oscillation_counters"] is None and s["lca_error"] is None
    assert s["run"]["n_iters"] == 80 and s["run"]["n_rows"] == 40
    # stride 2 stores no per-iteration rows: the statistics say they are window sums
    assert s["values"]["rows"].startswith("window sums of 2 iterations (40 rows")
    assert not s["values"]["per_iteration"]
    assert s["run"]["lca_total"] == pytest.approx(s["run"]["loss_change"], rel=1e-2)
    assert s["helping"]["pct_help"] == pytest.approx(60, abs=1.5)
    assert s["weibull"]["help"]["n"] == 5000 and len(s["weibull"]["layers"]) == 3
    assert s["oscillation"]["iters_per_change"] > 1
    assert s["synchrony"]["p_value"] < 0.05 and "baseline" not in s["synchrony"]
    with RunBundle.open(run) as b:  # an open bundle is accepted and left open
        again = summarize(b, weibull_sample=5000, shift_resamples=200)
        assert b.n_iters == 80
    assert again == s  # deterministic for a fixed seed


def test_summary_frame(run):
    s = summarize(run, weibull_sample=2000, shift_resamples=50)
    df = summary_frame(s)
    assert list(df.layer) == ["fc1", "fc2", "fc3"]
    assert {"total", "pct_help", "weibull_k_help", "tail_ratio", "iters_per_change"} <= set(df)


def test_cli_report_and_json(run, capsys):
    assert main([str(run), "--shift-resamples", "50", "--weibull-sample", "2000"]) == 0
    out = capsys.readouterr().out
    assert "helping" in out and "fc3" in out and "weibull" in out
    assert main([str(run), "--json", "--shift-resamples", "50", "--weibull-sample", "2000"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["n_iters"] == 80


def test_cli_bad_bundle(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("not a bundle")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not an HDF5 file" in err and "Traceback" not in err
    assert main([str(tmp_path / "missing.h5")]) == 2
    assert main([]) == 2
