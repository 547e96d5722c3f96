"""The engine benchmarks still run against today's engine (they hook its functions by name, and
a moved function once broke the profile unseen until a GPU session tried it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "synthetic", "--train-size", "500", "--chunk-size", "250", "--iters", "2"]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *TINY, *args],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_profile_engine_times_every_phase_of_a_rk4_iteration():
    out = _run("profile_engine.py")
    for phase in ("optimizer step", "LCA step", "full-dataset gradients", "record",
                  "bundle append"):
        assert re.search(rf"{phase}.*\d+\.\d+ ms/it", out), out
    # rk4 with endpoint reuse: two new full-dataset gradients per iteration, nothing else
    assert "gradient evaluations per iteration: 2.00" in out, out


def test_bench_engine_prints_the_floor_ratio_and_the_naive_baseline():
    out = _run("bench_engine.py", "--repeats", "1", "--skip", "adaptive,perclass")
    assert re.search(r"ratio to floor\s+\d+\.\d+", out), out
    assert re.search(r"ours is\s+\d+\.\d+x faster", out), out


def test_bench_defaults_prints_the_ratios_of_new_and_old_defaults_to_the_floor():
    out = _run("bench_defaults.py", "--floor-chunks", "500,250", "--memory", "--memory-budgets",
               "default", "--sync-copies")
    for column in ("new", "old", "sync"):  # sync: the gpu_suite overlap step's comparison
        assert re.search(rf"rk4 iteration, {column}\s+\d+\.\d+ s\s+ratio to floor\s+\d+\.\d+",
                         out), out
    assert '"host_copy": "sync"' in out, out
    assert '"chunk_size_requested": "auto"' in out, out  # the new run resolved auto
    assert re.search(r"memory: first evaluation raised peak RSS by \d+\.\d+ MiB", out), out
