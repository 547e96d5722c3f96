"""GIF and MP4 export of a tensor's or a layer's LCA over training."""

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from lcaviz.bundle import MissingRowsError, RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.cli import main as lcaviz_main
from lcaviz.figures.layout2d import symmetric_limit, tensor_image
from lcaviz.reports import animation
from lcaviz.reports.animation import (
    colorize,
    frame_caption,
    iter_frames,
    make_animation,
    plan_animation,
    render_frames,
    robust_limit,
    tensor_frames,
)
from lcaviz.reports.video import Canvas

LAYERS = (("conv", (4, 2, 3, 3)), ("fc", (10, 72)))


def test_colorize_is_green_white_red_and_symmetric():
    rgb = colorize(np.array([[-1.0, 0.0, 1.0, -5.0]]), limit=1.0)
    neg, zero, pos, clipped = rgb[0]
    assert tuple(zero) == (255, 255, 255)
    assert neg[1] > neg[0] and pos[0] > pos[1]  # green for helping, red for hurting
    assert tuple(clipped) == tuple(neg)  # beyond the limit saturates


def test_frames_are_exact_block_sums_of_stored_rows(tmp_path):
    path = write_synthetic_bundle(tmp_path / "r.h5", n_iters=12, layers=LAYERS)
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


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    """10 rows: one per iteration for iterations 0-4, then windows of 3 (the last one 17-19)."""
    return write_synthetic_bundle(tmp_path_factory.mktemp("anim") / "dense.h5", n_iters=20,
                                  stride="dense:5,3", layers=LAYERS)


def decode_mp4(path) -> tuple[dict, list[np.ndarray]]:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]


def all_shown(b: RunBundle, plan) -> np.ndarray:
    return np.concatenate([np.concatenate([i.ravel() for i in imgs])
                           for _, imgs in iter_frames(b, plan)])


def test_fixed_limit_is_the_robust_percentile_of_the_frames(dense, monkeypatch):
    with RunBundle.open(dense) as b:
        for what in ({"layer": "fc"}, {"tensor": "conv.weight"}):
            plan = plan_animation(b, **what)
            assert list(plan.rows) == list(range(10))
            shown = np.abs(all_shown(b, plan))
            assert robust_limit(b, plan) == pytest.approx(np.percentile(shown, 99.5),
                                                          rel=1e-12)
            assert robust_limit(b, plan) < shown.max()  # robust: not the largest value
        # a sample: only LIMIT_SAMPLE_FRAMES evenly spaced frames are read
        monkeypatch.setattr(animation, "LIMIT_SAMPLE_FRAMES", 3)
        plan = plan_animation(b, layer="fc")
        frames = dict(iter_frames(b, plan))
        sample = np.concatenate([i.ravel() for r in (0, 4, 9) for i in frames[r]])
        assert robust_limit(b, plan) == pytest.approx(np.percentile(np.abs(sample), 99.5),
                                                      rel=1e-12)


def test_frame_caption_comes_from_the_row_windows(dense):
    with RunBundle.open(dense) as b:
        w = b.row_windows
        assert frame_caption(w, 0, b.n_iters) == "iteration 0 of 20 | row 1 of 10"
        assert frame_caption(w, 4, b.n_iters) == "iteration 4 of 20 | row 5 of 10"
        assert frame_caption(w, 5, b.n_iters) == "iterations 5-7 of 20 (sum of 3) | row 6 of 10"
        assert frame_caption(w, 9, b.n_iters) == \
            "iterations 17-19 of 20 (sum of 3) | row 10 of 10"
    odd = np.array([[0, 1], [1, 1001], [1001, 1003]])  # no fixed stride, a partial last row
    assert frame_caption(odd, 1, 1003) == \
        "iterations 1-1,000 of 1,003 (sum of 1000) | row 2 of 3"
    assert frame_caption(odd, 2, 1003).startswith("iterations 1,001-1,002 of 1,003 (sum of 2)")


def test_every_frame_draws_its_caption_and_limit(dense, tmp_path, monkeypatch):
    drawn = []
    real = Canvas.draw

    def spy(self, panels, limit, caption):
        drawn.append((caption, limit, len(panels)))
        return real(self, panels, limit, caption)

    monkeypatch.setattr(Canvas, "draw", spy)
    with RunBundle.open(dense) as b:
        info = make_animation(b, tmp_path / "a.gif", layer="conv", max_frames=4)
        plan = plan_animation(b, layer="conv", max_frames=4)
        assert [c for c, _, _ in drawn] == [frame_caption(b.row_windows, r, 20)
                                            for r in (0, 3, 6, 9)]
        assert {lim for _, lim, _ in drawn} == {info["limit"]} == {robust_limit(b, plan)}
        assert {n for _, _, n in drawn} == {2}  # conv.weight and conv.bias, stacked
        drawn.clear()
        info = make_animation(b, tmp_path / "b.gif", layer="conv", range_mode="frame")
        per_frame = [symmetric_limit(np.concatenate([i.ravel() for i in imgs]), 99.5)
                     for _, imgs in iter_frames(b, plan_animation(b, layer="conv"))]
        assert info["limit"] is None and [lim for _, lim, _ in drawn] == per_frame
        assert len(set(per_frame)) > 1


def test_mp4_is_valid_h264_with_the_frames_of_the_gif(dense, tmp_path):
    with RunBundle.open(dense) as b:
        mp4 = make_animation(b, tmp_path / "fc.mp4", layer="fc", max_frames=7, fps=5)
        gif = make_animation(b, tmp_path / "fc.gif", layer="fc", max_frames=7)
        frames, _, _ = render_frames(b, plan_animation(b, layer="fc", max_frames=7))
        first = next(frames)
    data = (tmp_path / "fc.mp4").read_bytes()
    assert data[4:8] == b"ftyp" and mp4["format"] == "mp4" and mp4["frames"] == 7
    meta, decoded = decode_mp4(tmp_path / "fc.mp4")
    w, h = mp4["width"], mp4["height"]
    assert len(decoded) == 7 and meta["size"] == (w, h) and w % 2 == 0 and h % 2 == 0
    assert meta["fps"] == pytest.approx(5) and "h264" in meta["codec"]
    assert first.shape == (h, w, 3)
    assert np.abs(decoded[0].astype(int) - first).mean() < 4  # the same picture, lossy
    with Image.open(tmp_path / "fc.gif") as im:
        assert im.format == "GIF" and im.n_frames == gif["frames"] == 7 and im.size == (w, h)
        assert im.convert("RGB").getpixel((1, 1)) == (255, 255, 255)  # white stays white


def test_animate_cli_mp4_layer_frame_range_and_format(dense, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    assert lcaviz_main(["animate", str(dense), "--layer", "conv", "--out", str(out),
                        "--max-frames", "4", "--range", "frame", "--fps", "12"]) == 0
    text = capsys.readouterr().out
    assert "10 stored rows, showing 4 evenly spaced" in text and "range per frame" in text
    meta, frames = decode_mp4(out)
    assert len(frames) == 4 and meta["fps"] == pytest.approx(12)
    assert lcaviz_main(["animate", str(dense), "--tensor", "fc.weight", "--format", "mp4",
                        "--out", str(tmp_path / "y.bin")]) == 0
    assert (tmp_path / "y.bin").read_bytes()[4:8] == b"ftyp"
    assert "showing" not in capsys.readouterr().out  # all 10 rows, no subsampling note
    assert lcaviz_main(["animate", str(dense), "--layer", "fc", "--format", "mp4",
                        "--out", str(tmp_path / "z.gif")]) == 2
    assert "--format mp4 but the output is named 'z.gif'" in capsys.readouterr().err
    assert lcaviz_main(["animate", str(dense), "--layer", "fc", "--out",
                        str(tmp_path / "z.avi")]) == 2
    assert lcaviz_main(["animate", str(dense), "--layer", "nope"]) == 2
    assert "no layer 'nope'; layers: conv, fc" in capsys.readouterr().err


def test_layer_without_rows_or_run_without_rows_is_a_clear_error(tmp_path, capsys):
    part = write_synthetic_bundle(tmp_path / "part.h5", n_iters=6, lca_layers=["fc2"])
    empty = write_synthetic_bundle(tmp_path / "empty.h5", n_iters=3, stride=5,
                                   status="running")
    with RunBundle.open(part) as b:
        with pytest.raises(MissingRowsError, match="fc1 has no per-parameter rows"):
            plan_animation(b, layer="fc1")
        assert plan_animation(b, layer="fc2").n_rows == 6
    assert lcaviz_main(["animate", str(part), "--tensor", "fc1.weight", "--out",
                        str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err
    assert "fc1.weight has no per-parameter rows" in err and "--lca-layers" in err
    assert "layers with rows: fc2" in err and not (tmp_path / "a.mp4").exists()
    assert lcaviz_main(["animate", str(empty), "--layer", "fc1", "--out",
                        str(tmp_path / "b.gif")]) == 2
    assert "no per-parameter rows yet (R = 0)" in capsys.readouterr().err
