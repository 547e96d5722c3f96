"""Server memory (issue 28 item 9): every cache has a byte bound, the bounds add up to the
stated budget, finished jobs are counted by what they hold, and a server serving a runs
directory to several tabs at once peaks under 500 MB (tests/reliability/memory.py; numbers
for 200 bundles and 7 tabs are in the closing note of issue 28)."""

from __future__ import annotations

import numpy as np

from lcaviz.app import create_app, get_state
from lcaviz.app.cache import nbytes
from lcaviz.app.jobs import JobStatus
from lcaviz.app.state import CACHE_BUDGET_BYTES, cache_budget
from lcaviz.bundle.h5open import CHUNK_CACHE_BYTES
from tests.lcaviz import _hostile as H
from tests.reliability import memory


def test_cache_bounds_add_up_to_the_budget(tmp_path):
    budget = cache_budget()
    assert budget["total"] == sum(v for k, v in budget.items() if k != "total")
    assert budget["total"] <= CACHE_BUDGET_BYTES <= 300 * 2**20
    for k in range(6):
        H.good(tmp_path / f"r{k}.h5")
    state = get_state(create_app(tmp_path))
    for k in range(6):
        b, _ = state.open(f"r{k}.h5")
        b.rows(0, 2)
        assert b._f.id.get_access_plist().get_cache()[2] == CHUNK_CACHE_BYTES
    assert len(state.bundles) == 4  # the oldest two were closed
    for k in range(400):  # 400 x 1 MB through the 96 MiB array cache
        state.cached(("x", k), lambda: np.zeros(2**17))
    assert state.arrays.size_bytes <= state.arrays.max_bytes


def test_a_finished_job_counts_what_it_holds():
    status = JobStatus("done", result={"hist": np.zeros(10**6)})
    assert nbytes(status) >= 8 * 10**6  # was ~60 bytes: the 128 MiB bound never applied


def test_server_peak_memory_with_several_tabs(tmp_path):
    peak, failed = memory.measure(memory.make_runs(tmp_path, 10), tabs=5)
    assert failed == 0 and peak < 500, f"server peak RSS {peak:.0f} MB"
