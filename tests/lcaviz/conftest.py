"""Fixtures of the issue-27 tests (test_dashboard_*.py): the committed transformer sample, and
two runs of the same layers stored with one-iteration rows and with 5-iteration window rows."""

from __future__ import annotations

import shutil

import pytest

from lcaviz.app import create_app, get_state
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._dashboard_runs import FC_LAYERS, SAMPLE


@pytest.fixture(scope="module")
def grok(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("grok")
    shutil.copy(SAMPLE / "grokking_transformer.h5", runs_dir / "grok.h5")
    return get_state(create_app(runs_dir))


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    """Two runs of the same layers: rows of one iteration, and rows of 5-iteration windows."""
    runs_dir = tmp_path_factory.mktemp("strided")
    write_synthetic_bundle(runs_dir / "every.h5", n_iters=40, layers=FC_LAYERS, n_classes=3,
                           seed=0, per_class=False)
    write_synthetic_bundle(runs_dir / "window5.h5", n_iters=40, layers=FC_LAYERS, n_classes=3,
                           seed=0, per_class=False, stride=5)
    return get_state(create_app(runs_dir))
