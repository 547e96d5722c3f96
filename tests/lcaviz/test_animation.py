"""GIF export of a tensor's LCA over training."""

import numpy as np
from PIL import Image

from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.cli import main as lcaviz_main
from lcaviz.figures.layout2d import tensor_image
from lcaviz.reports.animation import colorize, tensor_frames


def test_colorize_is_green_white_red_and_symmetric():
    rgb = colorize(np.array([[-1.0, 0.0, 1.0, -5.0]]), limit=1.0)
    neg, zero, pos, clipped = rgb[0]
    assert tuple(zero) == (255, 255, 255)
    assert neg[1] > neg[0] and pos[0] > pos[1]  # green for helping, red for hurting
    assert tuple(clipped) == tuple(neg)  # beyond the limit saturates


def test_frames_are_exact_block_sums_of_stored_rows(tmp_path):
    path = write_synthetic_bundle(tmp_path / "r.h5", n_iters=12,
                                  layers=(("conv", (4, 2, 3, 3)), ("fc", (10, 72))))
    with RunBundle.open(path) as b:
        frames, rows, limit = tensor_frames(b, "conv.weight", max_frames=5, max_side=4)
        assert len(frames) == 5 and rows[0] == 0 and rows[-1] == b.n_rows - 1 and limit > 0
        full = tensor_image(b.row(rows[2], b.tensor_columns("conv.weight")), (4, 2, 3, 3))
        assert full.shape == (12, 6) and frames[2].shape == (4, 3)  # blocks of 3x2
        np.testing.assert_allclose(frames[2].sum(), full.astype(np.float64).sum(), rtol=1e-10)


def test_animate_cli_writes_a_looping_gif(tmp_path, capsys):
    path = write_synthetic_bundle(tmp_path / "r.h5", n_iters=20)
    out = tmp_path / "fc1.gif"
    assert lcaviz_main(["animate", str(path), "--tensor", "fc1.weight", "--out", str(out),
                        "--max-frames", "6"]) == 0
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.info.get("loop") == 0
    assert lcaviz_main(["animate", str(path), "--tensor", "nope"]) == 2
    assert "no tensor 'nope'" in capsys.readouterr().err
