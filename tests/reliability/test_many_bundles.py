"""A runs directory with 500 bundles, 50 of them broken in five different ways: ``scan_runs``
describes every file, and the runs page renders a row for each without raising.

How fast that is belongs to the benchmarks (``python benchmarks/bench_dashboard.py --runs 500``),
not to these tests: they must pass beside a CPU hog, where a time limit would only measure the
hog.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dash
import h5py
import numpy as np
import pytest

from lcaviz.app import create_app, get_state
from lcaviz.app.pages.runs import UNREADABLE, refresh_runs
from lcaviz.bundle import scan_runs
from lcaviz.bundle.synthetic import write_synthetic_bundle

N_TOTAL = 500
N_PER_BAD_KIND = 10
BAD_KINDS = ("truncated", "random", "version", "text", "empty")
TINY = (("fc1", (3, 4)), ("fc2", (2, 3)))  # 23 parameters


def _write_bad(path: Path, kind: str, good: bytes, version_blob: bytes, seed: int) -> None:
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2 - seed])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(seed).bytes(2000 + seed))
    elif kind == "version":
        path.write_bytes(version_blob)
    elif kind == "text":
        path.write_text("this is a text file, not an HDF5 bundle\n" * (seed + 1))
    else:
        path.write_bytes(b"")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """500 ``*.h5`` files: 450 copies of one tiny good bundle (some in sub-folders) and 10 of
    each bad kind. Returns (dir, {relative path: kind})."""
    root = tmp_path_factory.mktemp("many")
    src = write_synthetic_bundle(tmp_path_factory.mktemp("src") / "good.h5", n_iters=5,
                                 layers=TINY, n_classes=2, seed=1)
    good = src.read_bytes()
    v9 = src.with_name("v9.h5")
    shutil.copy(src, v9)
    with h5py.File(v9, "r+") as f:
        f.attrs["format_version"] = 9
    version_blob = v9.read_bytes()
    kinds: dict[str, str] = {}
    n_bad = N_PER_BAD_KIND * len(BAD_KINDS)
    for i in range(N_TOTAL - n_bad):
        rel = f"group{i % 5}/run{i:03d}.h5" if i % 3 == 0 else f"run{i:03d}.h5"
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_bytes(good)
        kinds[rel] = "good"
    for k, kind in enumerate(BAD_KINDS):
        for j in range(N_PER_BAD_KIND):
            rel = f"bad_{kind}_{j}.h5"
            _write_bad(root / rel, kind, good, version_blob, seed=10 * k + j)
            kinds[rel] = kind
    assert len(kinds) == N_TOTAL
    return root, kinds


@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
def test_scan_500_bundles_with_broken_ones_is_complete(runs_dir):
    root, kinds = runs_dir
    infos = scan_runs(root)
    assert len(infos) == N_TOTAL
    by_path = {i.path: i for i in infos}
    assert set(by_path) == set(kinds)
    for rel, kind in kinds.items():
        info = by_path[rel]
        if kind == "good":
            assert info.ok and not info.error, (rel, info.error)
            assert (info.iterations, info.n_params, info.status) == (5, 23, "complete")
        else:
            assert not info.ok, f"{rel} ({kind}) was read as a good bundle"
            assert info.error and Path(rel).name in info.error, (rel, info.error)
    errors = {kind: by_path[f"bad_{kind}_0.h5"].error for kind in BAD_KINDS}
    assert "format_version 9" in errors["version"]


@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
def test_runs_page_renders_a_row_for_each_of_500_bundles(runs_dir):
    root, kinds = runs_dir
    state = get_state(create_app(root))
    rows, cards, count, digest = refresh_runs(state, 0, None)
    assert len(rows) == N_TOTAL and {r["id"] for r in rows} == set(kinds)
    n_bad = N_PER_BAD_KIND * len(BAD_KINDS)
    unreadable = [r for r in rows if r["status"] in UNREADABLE]  # damaged, truncated ...
    assert {r["id"] for r in unreadable} == {p for p, k in kinds.items() if k != "good"}
    assert all(r["error"] and r["note"] for r in unreadable)
    assert all(r["iterations"] == 5 and r["status"] == "complete"
               for r in rows if kinds[r["id"]] == "good")
    assert len(cards) == n_bad
    assert count == f"{N_TOTAL - n_bad} runs, {n_bad} unreadable"
    # nothing changed: the next interval tick is a no-op, not a rescan
    again = refresh_runs(state, 1, digest)
    assert all(v is dash.no_update for v in again)
