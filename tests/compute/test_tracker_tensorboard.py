"""LCATracker(tensorboard=LOGDIR): events written live equal `lcaviz export tensorboard` of the
finished bundle, tag by tag and value by value (read with TensorBoard's EventAccumulator)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="needs the test extra: pip install -e '.[test]'")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from compute import LCATracker  # noqa: E402
from lcaviz.bundle import RunBundle  # noqa: E402
from lcaviz.export.tensorboard import ExportError, export_tensorboard  # noqa: E402
from tests.compute.test_tracker import _data, _model, _train  # noqa: E402


def _read(d):
    ea = EventAccumulator(str(d), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


def test_live_events_equal_the_export_of_the_bundle(tmp_path):
    x, y = _data()
    model = _model()
    live = tmp_path / "live"
    with LCATracker(model, x, y, out=tmp_path / "t.h5", per_class=False, lca_rows=3,
                    tensorboard=live) as lca:
        _train(model, x, y, lca)  # 7 steps: rows of 3, 3 and the partial last one (1)
    a = _read(live / "t")
    b = _read(export_tensorboard(tmp_path / "t.h5", tmp_path / "offline"))
    assert sorted(a.Tags()["scalars"]) == sorted(b.Tags()["scalars"])
    assert "lca/layer/0" in a.Tags()["scalars"] and "loss/minibatch" in a.Tags()["scalars"]
    for tag in b.Tags()["scalars"]:
        sa, sb = a.Scalars(tag), b.Scalars(tag)
        assert [e.step for e in sa] == [e.step for e in sb], tag
        np.testing.assert_allclose([e.value for e in sa], [e.value for e in sb], rtol=1e-6,
                                   atol=1e-12, err_msg=tag)
    assert sorted(a.Tags()["histograms"]) == sorted(b.Tags()["histograms"])
    for tag in b.Tags()["histograms"]:
        ha, hb = a.Histograms(tag), b.Histograms(tag)
        assert [h.step for h in ha] == [h.step for h in hb] == [2, 5, 6], tag
        for x_, y_ in zip(ha, hb, strict=True):
            va, vb = x_.histogram_value, y_.histogram_value
            assert va.num == vb.num and list(va.bucket) == list(vb.bucket), tag
            assert va.sum == pytest.approx(vb.sum, rel=1e-12, abs=1e-18)
    with RunBundle.open(tmp_path / "t.h5") as bundle:
        name = bundle.layer_names[1]
        np.testing.assert_allclose([e.value for e in a.Scalars(f"lca/layer/{name}")],
                                   bundle.lca_layer()[:, 1], rtol=1e-6)
    content = a.PluginTagToContent("hparams")
    hp = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info.hparams
    assert hp["source"].string_value == "LCATracker" and hp["optimizer"].string_value


def test_existing_events_stop_the_tracker_before_the_bundle_is_made(tmp_path):
    x, y = _data()
    model = _model()
    with LCATracker(model, x, y, out=tmp_path / "a.h5", per_class=False,
                    tensorboard=tmp_path / "tb") as lca:
        _train(model, x, y, lca, steps=2)
    events = sorted((tmp_path / "tb" / "a").iterdir())
    again = tmp_path / "again" / "a.h5"  # a run of the same name into the same LOGDIR
    again.parent.mkdir()
    with pytest.raises(ExportError, match="already holds TensorBoard events"):
        with LCATracker(model, x, y, out=again, per_class=False, tensorboard=tmp_path / "tb"):
            pass
    assert not again.exists() and sorted((tmp_path / "tb" / "a").iterdir()) == events
