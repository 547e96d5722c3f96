"""docs/reproduction.md is generated from the committed sample bundles, never typed by hand."""

from pathlib import Path

import pytest

from lcaviz.reports.reproduction import BEGIN, END, main, replace_between

ROOT = Path(__file__).parents[2]


def _section(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_committed_report_matches_the_sample_bundles(tmp_path):
    committed = (ROOT / "docs" / "reproduction.md").read_text()
    out = tmp_path / "reproduction.md"
    out.write_text(committed)
    assert main(["--runs", str(ROOT / "sample_runs"), "--out", str(out)]) == 0
    regenerated = out.read_text().replace(str(ROOT / "sample_runs"), "sample_runs")
    assert _section(regenerated) == _section(committed)
    bundles = sorted(p.stem for p in (ROOT / "sample_runs").glob("*.h5"))
    assert len(bundles) >= 4
    for name in bundles:
        assert f"| {name} |" in _section(committed)


def test_replace_between_keeps_the_rest():
    text = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    assert replace_between(text, BEGIN, END, "new") == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"
    assert replace_between("x", BEGIN, END, "b").endswith(f"{BEGIN}\nb\n{END}\n")
    with pytest.raises(SystemExit):
        main(["--bogus"])
