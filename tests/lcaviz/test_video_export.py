"""The run page's heatmap exports: GIF and MP4 of the page's layer and colour range mode."""

from __future__ import annotations

import base64

import dash
import imageio_ffmpeg
import pytest

from lcaviz.app import create_app, get_state, ids
from lcaviz.app.pages import run, run_exports
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.reports import animation


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    runs = tmp_path_factory.mktemp("video") / "runs"
    runs.mkdir()
    write_synthetic_bundle(runs / "dense.h5", n_iters=20, stride="dense:5,3",
                           layers=(("conv", (4, 2, 3, 3)), ("fc", (10, 72))))
    write_synthetic_bundle(runs / "part.h5", n_iters=6, lca_layers=["fc2"])
    write_synthetic_bundle(runs / "empty.h5", n_iters=3, stride=5, status="running")
    return get_state(create_app(runs))


def export(state, run_id: str, fmt: str, *, layer: int = 0, range_mode: str = "fixed",
           graph: str = ids.HEATMAP):
    values = [None] * len(run_exports.CONTROL_STATES)
    names = [n for n, _, _ in run_exports.CONTROL_STATES]
    values[names.index("run_id")] = run_id
    values[names.index("layer")] = layer
    values[names.index("range_mode")] = range_mode
    return run_exports.export_figure(state, {"graph": graph, "fmt": fmt}, values)


def test_heatmap_card_offers_gif_and_mp4():
    def button_fmts(node) -> list[str]:
        found = []
        if isinstance(getattr(node, "id", None), dict) and node.id.get("type") == ids.EXPORT \
                and node.id.get("graph") == ids.HEATMAP:
            found.append(node.id["fmt"])
        children = getattr(node, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if child is not None and not isinstance(child, str):
                found += button_fmts(child)
        return found

    fmts = button_fmts(run.layout(run_id="dense.h5"))
    assert fmts[-2:] == ["gif", "mp4"] and "mp4" not in ids.EXPORT_FORMATS


def test_mp4_export_is_the_pages_layer_and_range(state, tmp_path, monkeypatch):
    calls = []
    real = animation.make_animation

    def spy(b, out, **kw):
        calls.append(kw)
        return real(b, out, **kw)

    monkeypatch.setattr(animation, "make_animation", spy)
    out = export(state, "dense.h5", "mp4", layer=1, range_mode="frame")
    assert out["filename"] == "dense-fc.mp4" and out["base64"]
    data = base64.b64decode(out["content"])
    assert data[4:8] == b"ftyp"
    assert calls[-1]["layer"] == 1 and calls[-1]["range_mode"] == "frame"
    assert calls[-1]["fmt"] == "mp4"
    path = tmp_path / "page.mp4"
    path.write_bytes(data)
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    assert sum(1 for _ in gen) == 10  # every stored row of the dense schedule
    gif = export(state, "dense.h5", "gif", layer=1)
    assert gif["filename"] == "dense-fc.gif" and calls[-1]["range_mode"] == "fixed"
    assert base64.b64decode(gif["content"])[:6] == b"GIF89a"
    assert meta["size"][0] % 2 == 0 and meta["size"][1] % 2 == 0
    assert export(state, "dense.h5", "mp4", graph=ids.LOSS) is dash.no_update


def test_mp4_export_without_rows_says_why(state):
    out = export(state, "part.h5", "mp4", layer=0)
    assert out["filename"] == "part-fc1-mp4-not-made.txt"
    assert "fc1 has no per-parameter rows" in out["content"] and "--lca-layers" in out["content"]
    assert export(state, "part.h5", "mp4", layer=1)["filename"] == "part-fc2.mp4"
    out = export(state, "empty.h5", "gif")
    assert out["filename"].endswith(".txt") and "R = 0" in out["content"]
    out = export(state, "missing.h5", "mp4")
    assert out["filename"] == "missing-mp4-not-made.txt" and "No MP4" in out["content"]

