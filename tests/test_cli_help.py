"""Every command-line flag says what it does and its default (issue 14 item 11)."""

import re
import subprocess
import sys

import pytest

from compute.run.cli import build_parser


def test_every_lca_run_flag_has_help_and_no_misleading_default():
    p = build_parser()
    text = p.format_help()
    for action in p._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
    assert "(default: None)" not in text and "(default: True)" not in text
    assert "(default: per dataset) (default" not in text
    body = text.split("\nnetwork and data:", 1)[1]  # past the usage lines
    for flag, default in (("--lr", "0.01"), ("--iters", "1000"), ("--net", "mnist_fc"),
                          ("--method", "rk4"), ("--batch-size", "250"),
                          ("--checkpoint-seconds", "120.0"), ("--lca-storage", "float32")):
        block = body.split(f"\n  {flag}", 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default})" in re.sub(r"\s+", " ", block), (flag, block)
    no_pc = body.split("\n  --no-per-class", 1)[1].split("\n  --", 1)[0]
    assert "default: split per class" in re.sub(r"\s+", " ", no_pc)


@pytest.mark.parametrize("argv", [["lcaviz", "animate", "--help"], ["lcaviz", "animate", "-h"],
                                  ["lcaviz", "--help"], ["lca-run", "--help"]])
def test_help_works_everywhere(argv):
    module = {"lcaviz": "lcaviz.cli", "lca-run": "compute.run.cli"}[argv[0]]
    r = subprocess.run([sys.executable, "-m", module, *argv[1:]], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage:") and "unrecognized" not in r.stderr
