"""The label-noise section of docs/findings.md, generated from a synthetic bundle with planted
memorisation of flipped examples (lcaviz.bundle.synthetic_examples)."""

from __future__ import annotations

import numpy as np

from lcaviz.analysis import label_noise as ln
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.reports import memorisation

LAYERS = (("fc1", (12, 8)), ("fc2", (3, 12)))


def test_the_section_reads_the_bundle_and_writes_between_its_markers(tmp_path):
    path = write_synthetic_bundle(tmp_path / "n.h5", n_iters=40, layers=LAYERS, n_classes=3,
                                  examples=200, label_noise=0.2)
    with RunBundle.open(path) as b:
        d = ln.from_bundle(b)
        assert d.flipped.sum() == len(b.label_noise()["flipped"])  # all examples tracked
        text = memorisation.section(b)
    assert "AUROC" in text and "mislabeled" in text and "fc1" in text
    # the AUROC rows are numbers in [0, 1]
    values = [float(line.rsplit("|", 2)[1]) for line in text.splitlines()
              if line.startswith("| ") and line.count("|") == 3 and "AUROC" not in line]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    out = tmp_path / "findings.md"
    out.write_text("# Findings\n\nprose kept\n")
    assert memorisation.main(["--run", str(path), "--out", str(out)]) == 0
    again = out.read_text()
    assert "prose kept" in again and memorisation.BEGIN in again and memorisation.END in again
    assert memorisation.main(["--run", str(path), "--out", str(out)]) == 0
    assert out.read_text().count(memorisation.BEGIN) == 1  # replaced, not appended


def test_a_bundle_without_label_noise_gets_a_clear_error(tmp_path):
    path = write_synthetic_bundle(tmp_path / "c.h5", n_iters=10, layers=LAYERS, n_classes=3,
                                  examples=50)
    with RunBundle.open(path) as b:
        try:
            ln.from_bundle(b)
        except ValueError as e:
            assert "--label-noise" in str(e)
        else:
            raise AssertionError("a bundle without label noise was accepted")
    assert np.isfinite(ln.auroc(np.arange(4.0), np.array([0, 0, 1, 1], bool)))
