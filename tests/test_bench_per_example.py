"""benchmarks/bench_per_example.py still runs against today's engine (tiny synthetic run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_per_example_prints_the_ratios_and_the_float32_sum_check():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_per_example.py"),
                        "--dataset", "synthetic", "--train-size", "300", "--chunk-size", "100",
                        "--repeats", "1"], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for label in ("floor", "2 nodes, check", "2 nodes, no check", "rk4 step", "3 nodes",
                  "integrator rk4", "integrator rk4, per_example=all"):
        assert re.search(rf"^  {label}.*\s[\d.]+ s\s+[\d.]+x$", p.stdout, re.M), p.stdout
    error = float(re.search(r"per layer: (\S+);", p.stdout).group(1))
    assert error < 1e-4, p.stdout  # float32 rounding, not a missing term
    assert "repaired by the check: none" in p.stdout, p.stdout
    ratio = re.search(r"per-example / plain rk4 per iteration: ([\d.]+)x \(extra passes: 0\)"
                      r"; storage per row: 300 x 3 x 4 B", p.stdout)
    assert ratio and float(ratio.group(1)) > 0, p.stdout
