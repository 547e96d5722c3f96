"""RunBundle: metadata, lazy slices, stride semantics, live runs, typed errors, scan_runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcaviz.bundle import (
    BundleError,
    BundleNotFoundError,
    CorruptBundleError,
    NotABundleError,
    RunBundle,
    UnsupportedVersionError,
    scan_runs,
)
from lcaviz.bundle.schema import FORMAT_VERSION
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._bundle_factory import SMALL_LAYERS, matrix_bundle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """A bundle written from an explicit matrix: (path, lca (T, P), layer sizes)."""
    rng = np.random.default_rng(3)
    sizes = [7, 5, 3]
    lca = rng.standard_normal((21, 15)).astype(np.float32)
    lca[:, 2] = 0
    path = matrix_bundle(tmp_path_factory.mktemp("b") / "known.h5", lca, sizes, cumsum_every=4)
    return path, lca, sizes


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "syn.h5"
    return write_synthetic_bundle(path, n_iters=40, layers=SMALL_LAYERS + (("conv", (4, 2, 3, 3)),),
                                  stride=3, save_trajectory=True, val_lca=True, seed=5)


def read_everything(b: RunBundle) -> None:
    """Touch every accessor (used by the fuzz tests: only BundleError may escape)."""
    b.rows(), b.lca_layer(), b.lca_class_layer(), b.loss_train(), b.accuracy_train()
    b.param_help_iters(), b.param_nonzero_iters(), b.help_count(), b.hurt_count()
    b.seconds(), b.splits(), b.residual(), b.loss_minibatch(), b.params
    if b.n_rows:
        b.cumulative(b.n_rows - 1)


def test_metadata(known, synthetic):
    path, lca, sizes = known
    with RunBundle.open(path) as b:
        assert (b.n_iters, b.n_rows, b.n_params, b.n_layers, b.n_classes) == (21, 21, 15, 3, 3)
        assert b.status == "complete" and b.method == "rk4" and b.stride == 1
        assert b.layer_names == ["l0", "l1", "l2"] and list(b.layer_sizes) == sizes
        assert b.config["net"] == "matrix" and not b.has_trajectory and b.has_class_layer
        assert b.layer_columns("l1") == slice(7, 12) and b.layer_index(-1) == 2
        assert b.iteration_of_row(3) == (3, 4) and b.row_of_iteration(20) == 20
    with RunBundle.open(synthetic) as b:
        df = b.params
        assert list(df.columns) == ["name", "shape", "offset", "size", "layer", "layer_name",
                                    "module_type"]
        conv = df[df.name == "conv.weight"].iloc[0]
        assert conv["shape"] == (4, 2, 3, 3) and conv["module_type"] == "Conv2d"
        assert df["size"].sum() == b.n_params and b.has_trajectory and b.has_val
        assert b.tensor_columns("fc2.bias") == slice(int(df.offset[3]), int(df.offset[3]) + 12)
        with pytest.raises(KeyError):
            b.layer_index("nope")


def test_lazy_slices_equal_full_matrix(known):
    path, lca, _ = known
    with RunBundle.open(path) as b:
        full = b.rows()
        np.testing.assert_array_equal(full, lca)
        np.testing.assert_array_equal(b.row(-1), lca[-1])
        for cols in (slice(2, 9), slice(1, 14, 3), slice(12, 2, -2), [9, 0, 14, 3],
                     np.arange(15) % 2 == 0, 6):
            np.testing.assert_array_equal(b.rows(4, 11, cols), lca[4:11][:, cols])
        np.testing.assert_array_equal(b.layer_window("l1", 2, 5), lca[2:5, 7:12])
        np.testing.assert_array_equal(b.param_curve(13), lca[:, 13])
        blocks = list(b.iter_row_blocks(block_rows=4, cols=[1, 2]))
        assert [s for s, _ in blocks] == [0, 4, 8, 12, 16, 20]
        np.testing.assert_array_equal(np.concatenate([x for _, x in blocks]), lca[:, [1, 2]])
        with pytest.raises(IndexError):
            b.row(21)


def test_cumulative_and_window_sums(known):
    path, lca, _ = known
    exact = np.cumsum(lca.astype(np.float64), axis=0)
    with RunBundle.open(path) as b:
        for r in range(-1, 21):  # crosses every cumsum row (every = 4)
            want = exact[r] if r >= 0 else np.zeros(15)
            np.testing.assert_allclose(b.cumulative(r), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b.cumulative(20, cols=[3, 4]), exact[20, [3, 4]], atol=1e-5)
        np.testing.assert_allclose(b.window_sum(2, 19), lca[2:19].sum(0, dtype=float),
                                   atol=1e-5)
        np.testing.assert_allclose(b.window_sum(5, 7), lca[5:7].sum(0, dtype=float), atol=1e-6)


@pytest.mark.parametrize("status", ["complete", "running"])
def test_stride_rows_are_exact_window_sums(tmp_path, status):
    lca = np.random.default_rng(0).standard_normal((22, 10)).astype(np.float32)
    path = matrix_bundle(tmp_path / "s.h5", lca, [6, 4], stride=5, status=status)
    with RunBundle.open(path) as b:
        R = 5 if status == "complete" else 4  # ceil(22/5) after the partial window, else 22//5
        assert (b.n_iters, b.n_rows, b.stride) == (22, R, 5)
        for r in range(R):
            i0, i1 = b.iteration_of_row(r)
            np.testing.assert_allclose(b.row(r), lca[i0:i1].sum(0, dtype=float), rtol=1e-6,
                                       atol=1e-6)
        if status == "complete":  # the last, partial window
            assert b.iteration_of_row(4) == (20, 22)
        np.testing.assert_allclose(b.lca_layer().sum(1), lca.sum(1, dtype=float), atol=1e-5)
        assert b.lca_layer().shape == (22, 2) and b.loss_train().shape == (23,)


def test_synthetic_generator_is_consistent(synthetic):
    with RunBundle.open(synthetic) as b:
        assert b.n_rows == 14 and b.rows(source="lca_val").shape == (14, b.n_params)
        loss = b.loss_train()
        np.testing.assert_allclose(np.diff(loss), b.lca_layer().sum(1) + b.residual(),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b.lca_class_layer().sum(1), b.lca_layer(), atol=1e-12)
        np.testing.assert_allclose(b.rows().sum(dtype=float), b.lca_layer().sum(), rtol=1e-5)
        assert b.trajectory_row(b.n_iters).shape == (b.n_params,)
        assert b.trajectory_param(0).shape == (41,)
        assert b.param_nonzero_iters().max() <= 40


def _copy_with(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def test_typed_errors_name_the_file(tmp_path, known):
    good = known[0]
    cases = {
        NotABundleError: [tmp_path / "text.h5"],
        BundleNotFoundError: [tmp_path / "missing.h5"],
        UnsupportedVersionError: [],
        CorruptBundleError: [],
    }
    cases[NotABundleError][0].write_text("hello, not HDF5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    cases[NotABundleError].append(plain)
    cases[NotABundleError].append(_copy_with(
        good, tmp_path / "fmt.h5", lambda f: f.attrs.__setitem__("format", "other")))
    cases[UnsupportedVersionError].append(_copy_with(
        good, tmp_path / "v_next.h5",
        lambda f: f.attrs.__setitem__("format_version", FORMAT_VERSION + 1)))
    cases[CorruptBundleError] += [
        _copy_with(good, tmp_path / "noloss.h5", lambda f: f.__delitem__("loss/train")),
        _copy_with(good, tmp_path / "off.h5",
                   lambda f: f["params/offsets"].__setitem__(-1, 99)),
        _copy_with(good, tmp_path / "prog.h5",
                   lambda f: f["progress"].__setitem__(slice(None), [50, 50])),
    ]
    half = tmp_path / "half.h5"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases[CorruptBundleError].append(half)
    for err, paths in cases.items():
        for p in paths:
            with pytest.raises(err) as info:
                read_everything(RunBundle.open(p))
            assert str(p) in str(info.value), info.value
            assert isinstance(info.value, BundleError)
    with pytest.raises(CorruptBundleError, match="offsets"):
        RunBundle.open(tmp_path / "off.h5")
    with pytest.raises(CorruptBundleError, match="progress"):
        RunBundle.open(tmp_path / "prog.h5")


def test_flipped_metadata_in_the_middle(tmp_path, synthetic):
    """Flip the bytes of a checksummed metadata block past the file's middle. (Flips inside raw
    chunk data cannot be detected: HDF5 stores no checksum for uncompressed chunks.)"""
    data = bytearray(synthetic.read_bytes())
    blocks = [m.start() for m in re.finditer(rb"EAIB|EAHD|OHDR|FHDB|BTLF", bytes(data))
              if m.start() > len(data) // 2]
    assert blocks
    bad = tmp_path / "flipped.h5"
    for start in blocks:
        for i in range(start + 8, start + 24):
            data[i] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptBundleError) as info:
        with RunBundle.open(bad) as b:
            read_everything(b)
            b.rows(source="trajectory"), b.rows(source="lca_val")
    assert str(bad) in str(info.value)


_WRITER = textwrap.dedent("""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("a", (6, 5)), ("b", (3, 6))), n_iters=40, stride=3)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)
    it = run.records()
    for n in (10, 12):
        for _ in range(n):
            w.append(next(it))
        w.flush()
        print("flushed", flush=True)
        sys.stdin.readline()
    w.close("failed", "killed by test")
    print("closed", flush=True)
""")


def test_live_bundle_written_by_a_running_subprocess(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        b = RunBundle.open(path)
        assert b.live and b.status == "running"
        assert (b.n_iters, b.n_rows) == (10, 3) and b.lca_layer().shape == (10, 2)
        assert b.rows().shape == (3, 57) and b.loss_train().shape == (11,)
        assert info_ok(scan_runs(tmp_path))
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "flushed"
        b.refresh()
        assert (b.n_iters, b.n_rows, b.status) == (22, 7, "running")
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        b.refresh()
        assert (b.status, b.status_reason, b.live) == ("failed", "killed by test", False)
        b.close()
    finally:
        proc.kill()
        proc.wait()


def info_ok(infos) -> bool:
    return len(infos) == 1 and infos[0].ok and infos[0].status == "running"


def test_scan_runs(tmp_path, known):
    (tmp_path / "sub").mkdir()
    shutil.copy(known[0], tmp_path / "good.h5")
    shutil.copy(known[0], tmp_path / "sub" / "good2.h5")
    (tmp_path / "broken.h5").write_bytes(known[0].read_bytes()[:3000])
    (tmp_path / "junk.h5").write_bytes(b"\x00" * 100)
    (tmp_path / "notes.txt").write_text("ignored")
    _copy_with(known[0], tmp_path / "v9.h5", lambda f: f.attrs.__setitem__("format_version", 9))
    infos = {i.path: i for i in scan_runs(tmp_path)}
    assert set(infos) == {"good.h5", "sub/good2.h5", "broken.h5", "junk.h5", "v9.h5"}
    good = infos["sub/good2.h5"]
    assert good.ok and good.iterations == 21 and good.net == "matrix" and good.size > 0
    assert not infos["broken.h5"].ok and "broken.h5" in infos["broken.h5"].error
    assert not infos["v9.h5"].ok and "format_version 9" in infos["v9.h5"].error
    assert scan_runs(tmp_path / "nope") == []


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    lca = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    return matrix_bundle(tmp_path_factory.mktemp("f") / "tiny.h5", lca, [3, 2]).read_bytes()


# derandomized: CI sees the same 60 inputs every run (a fresh random input that found a new
# failure would otherwise make CI flaky); the timeout turns a reader hang into a failure.
@pytest.mark.timeout(180)
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_reader_raises_only_bundle_errors(tmp_path, tiny_bytes, data):
    kind = data.draw(st.sampled_from(["random", "truncate", "flip"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=4096))
        if data.draw(st.booleans()):
            blob = tiny_bytes[:8] + blob  # HDF5 signature, garbage after it
    elif kind == "truncate":
        blob = tiny_bytes[: data.draw(st.integers(0, len(tiny_bytes) - 1))]
    else:
        blob = bytearray(tiny_bytes)
        for pos in data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=16)):
            blob[pos] ^= data.draw(st.integers(1, 255))
        blob = bytes(blob)
    path = tmp_path / "fuzz.h5"
    path.write_bytes(blob)
    try:
        with RunBundle.open(path) as b:
            read_everything(b)
    except BundleError as e:
        assert str(path) in str(e)
    else:
        assert kind == "flip"  # a flip inside raw data is not detectable


def test_generator_cli_and_block_sizing(tmp_path, capsys):
    from lcaviz.bundle.synthetic import main as gen_main

    out = tmp_path / "cli.h5"
    assert gen_main([str(out), "--iters", "7", "--params", "4000", "--layers", "2",
                     "--stride", "3", "--status", "running"]) == 0
    assert "wrote" in capsys.readouterr().out
    with RunBundle.open(out) as b:
        assert (b.n_iters, b.n_rows, b.n_layers, b.status) == (7, 2, 2, "running")
        assert b.block_rows_for(1_000_000) == 16  # 64 MiB of float32 rows, chunk-aligned
        assert b.block_rows_for(10_000_000) == 1
