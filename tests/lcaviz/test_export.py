"""lcaviz export tensorboard / wandb: read back with each tool's own reader and compared with
the bundle's numbers."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="needs the test extra: pip install -e '.[test]'")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from lcaviz.bundle import RunBundle  # noqa: E402
from lcaviz.cli import main as lcaviz_main  # noqa: E402
from lcaviz.export.series import flat_config  # noqa: E402
from lcaviz.export.tensorboard import ExportError, export_tensorboard  # noqa: E402
from tests.lcaviz._bundle_factory import matrix_bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SIZES = [6, 4, 3]
T = 12
GROUPS = [("l0.a", [(0, 3)]), ("l0.b", [(3, 6)])]
CONFIG = {"lr": 0.05, "momentum": 0.9, "betas": [0.9, 0.99], "sched": {"warmup": 2},
          "note": None}


@pytest.fixture()
def bundle(tmp_path):
    rng = np.random.default_rng(0)
    lca = rng.normal(0, 1e-3, (T, sum(SIZES))).astype(np.float32)
    lca[:, 0] = 0.0
    path = matrix_bundle(tmp_path / "run1.h5", lca, SIZES, stride=4, groups=GROUPS,
                         config=CONFIG)
    return path, lca.astype(np.float64)


def _accumulator(d: Path) -> EventAccumulator:
    ea = EventAccumulator(str(d), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


def _scalars(ea: EventAccumulator, tag: str) -> tuple[np.ndarray, np.ndarray]:
    ev = ea.Scalars(tag)
    return np.array([e.step for e in ev]), np.array([e.value for e in ev])


def test_tensorboard_round_trip(bundle, tmp_path):
    path, lca = bundle
    out = export_tensorboard(path, tmp_path / "logs")
    assert out == tmp_path / "logs" / "run1"
    ea = _accumulator(out)
    b = RunBundle.open(path)
    layer = b.lca_layer()
    for li, name in enumerate(b.layer_names):
        steps, values = _scalars(ea, f"lca/layer/{name}")
        np.testing.assert_array_equal(steps, np.arange(T))
        np.testing.assert_allclose(values, layer[:, li], rtol=1e-6)  # float32 in the file
        _, cum = _scalars(ea, f"lca_cumulative/layer/{name}")
        np.testing.assert_allclose(cum, np.cumsum(layer[:, li]), rtol=1e-6)
        _, pct = _scalars(ea, f"helping_pct/layer/{name}")
        cols = b.layer_columns(li)
        want = 100 * (lca[:, cols] < 0).sum(1) / (lca[:, cols] != 0).sum(1)
        np.testing.assert_allclose(pct, want, rtol=1e-6)
    _, g = _scalars(ea, "lca/group/l0.b")
    np.testing.assert_allclose(g, lca[:, 3:6].sum(1), rtol=1e-5)
    steps, loss = _scalars(ea, "loss/train")
    np.testing.assert_array_equal(steps, np.arange(T + 1))
    np.testing.assert_allclose(loss, b.loss_train(), rtol=1e-6)
    np.testing.assert_allclose(_scalars(ea, "lca/residual")[1], b.residual(), atol=1e-12)
    np.testing.assert_allclose(_scalars(ea, "loss/minibatch")[1], b.loss_minibatch(),
                               rtol=1e-6)
    # one histogram per stored row (windows of 4 iterations, at their last iteration)
    for li, name in enumerate(b.layer_names):
        hs = ea.Histograms(f"lca_param/{name}")
        assert [h.step for h in hs] == [3, 7, 11]
        for r, h in enumerate(hs):
            row = b.layer_window(li, r, r + 1)[0].astype(np.float64)
            hv = h.histogram_value
            assert hv.num == SIZES[li] and sum(hv.bucket) == SIZES[li]
            assert hv.sum == pytest.approx(row.sum(), rel=1e-12, abs=1e-15)
            assert (hv.min, hv.max) == (pytest.approx(row.min()), pytest.approx(row.max()))
    # hparams: the flattened config, and the run-level metrics beside it
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info.hparams
    assert start["lr"].number_value == 0.05 and start["optimizer"].string_value == "sgd"
    assert start["sched.warmup"].number_value == 2
    assert json.loads(start["betas"].string_value) == [0.9, 0.99]
    assert start["note"].string_value == "null"
    exp = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in exp.metric_infos} >= {"hparams/final_loss_train"}
    np.testing.assert_allclose(_scalars(ea, "hparams/final_loss_train")[1],
                               [b.loss_train()[-1]], rtol=1e-6)
    b.close()


def test_tensorboard_export_refuses_to_overwrite_and_cli(bundle, tmp_path, capsys):
    path, _ = bundle
    logs = tmp_path / "logs"
    assert lcaviz_main(["export", "tensorboard", str(path), str(logs),
                        "--max-histogram-rows", "2"]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    files = sorted((logs / "run1").iterdir())
    ea = _accumulator(logs / "run1")
    assert [h.step for h in ea.Histograms("lca_param/l0")] == [3, 11]
    with pytest.raises(ExportError, match="already holds TensorBoard events"):
        export_tensorboard(path, logs)
    assert lcaviz_main(["export", "tensorboard", str(path), str(logs)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert sorted((logs / "run1").iterdir()) == files  # nothing added or lost
    assert lcaviz_main(["export", "tensorboard", str(tmp_path / "nope.h5"), str(logs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lcaviz export: error:") and err.count("\n") == 1


def test_export_help(capsys):
    with pytest.raises(SystemExit) as info:
        lcaviz_main(["export", "tensorboard", "-h"])
    assert info.value.code == 0 and "LOGDIR" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        lcaviz_main(["export", "comet", "x.h5"])
    assert "invalid choice" in capsys.readouterr().err


def test_flat_config():
    flat = flat_config({"a": {"b": 1, "c": [1, 2]}, "d": float("nan"), "e": True})
    assert flat == {"a.b": 1, "a.c": "[1, 2]", "d": "NaN", "e": True}


def test_export_imports_neither_torch_nor_tensorflow(bundle, tmp_path):
    path, _ = bundle
    code = ("import sys; from lcaviz.export.tensorboard import export_tensorboard; "
            f"export_tensorboard({str(path)!r}, {str(tmp_path / 'x')!r}); "
            "print('torch' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False False"


# -- W&B, offline --------------------------------------------------------------------------
def _wandb_records(path: Path):
    """The records of a ``.wandb`` run file (W&B's LevelDB-style log: 32 KiB blocks of
    ``crc32, length, type`` framed chunks after a 7-byte ``:W&B`` header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    pos, buf, block = 7, b"", 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:  # zero padding to the end of the block
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def _nested(items) -> dict:
    """Items of a history / summary / config record as a dict; a key is ``key`` or the path
    ``nested_key`` (a histogram is (tag, "values" / "bins"))."""
    out: dict = {}
    for i in items:
        keys = list(i.nested_key) or [i.key]
        d = out
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = json.loads(i.value_json)
    return out


def test_wandb_offline_round_trip(bundle, tmp_path):
    pytest.importorskip("wandb", reason="needs the test extra: pip install -e '.[test]'")
    path, _ = bundle
    env = {**os.environ, "WANDB_MODE": "offline",  # belt and braces: never reach a server
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "lcaviz.cli", "export", "wandb", str(path),
                          "--dir", str(tmp_path / "wb"), "--project", "test"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "wandb sync" in out.stdout
    run_dir = next((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    history, summary, config = {}, {}, {}
    for rec in _wandb_records(next(run_dir.glob("run-*.wandb"))):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history[rec.history.step.num] = _nested(rec.history.item)
        elif kind == "summary":
            summary.update(_nested(rec.summary.update))
        elif kind == "run":
            config.update(_nested(rec.run.config.update))
    b = RunBundle.open(path)
    assert sorted(history) == list(range(T + 1))
    np.testing.assert_allclose([history[t]["lca/layer/l1"] for t in range(T)],
                               b.lca_layer()[:, 1], rtol=1e-12)
    np.testing.assert_allclose([history[t]["loss/train"] for t in range(T + 1)],
                               b.loss_train(), rtol=1e-12)
    hist = history[7]["lca_param/l2"]
    assert hist["_type"] == "histogram" and sum(hist["values"]) == SIZES[2]
    row = b.layer_window(2, 1, 2)[0]
    assert hist["bins"][0] == pytest.approx(row.min()) and hist["bins"][-1] == pytest.approx(
        row.max())
    assert "lca_param/l2" not in history[6]  # histograms only at the stored rows' steps
    assert summary["hparams/final_loss_train"] == pytest.approx(b.loss_train()[-1])
    assert config["lr"] == 0.05 and config["sched.warmup"] == 2, config
    b.close()
