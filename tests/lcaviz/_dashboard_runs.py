"""Constants and helpers shared by the issue-27 tests (their runs are fixtures in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from lcaviz.app.pages import run_callbacks

SAMPLE = Path(__file__).resolve().parents[2] / "sample_runs"
FC_LAYERS = (("fc1", (20, 30)), ("fc2", (10, 20)))


def _meta(state, run_id):
    return run_callbacks.init_run(state, run_id)[0]
