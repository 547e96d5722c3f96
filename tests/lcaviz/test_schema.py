"""The format's own rules: row schedules, stored column ranges and bfloat16 rows."""

import numpy as np
import pytest

from lcaviz.bundle.schema import (
    RowSchedule,
    ScheduleError,
    column_ranges,
    from_bfloat16,
    ranges_index,
    to_bfloat16,
)


@pytest.mark.parametrize("spec, dense, stride", [
    ("5", 0, 5), ("stride:5", 0, 5), (7, 0, 7), ("dense:220,5", 220, 5), ("dense:30", 30, 1),
    (" DENSE:3,2 ", 3, 2)])
def test_schedule_parses(spec, dense, stride):
    s = RowSchedule.parse(spec)
    assert (s.dense, s.stride) == (dense, stride)
    assert RowSchedule.parse(s.spec) == s


@pytest.mark.parametrize("spec", ["", "0", "dense:", "dense:5,0", "every:3", "-1", "dense:-2,3"])
def test_bad_schedule_is_refused_with_its_form(spec):
    with pytest.raises(ScheduleError, match="schedule"):
        RowSchedule.parse(spec)


@pytest.mark.parametrize("spec", ["1", "4", "dense:5,3", "dense:12,5", "dense:0,2"])
@pytest.mark.parametrize("T", [0, 1, 5, 11, 12, 13, 30])
def test_windows_tile_the_run_and_agree_with_closes_after(spec, T):
    s = RowSchedule.parse(spec)
    w = s.windows(T, complete=True)
    if T:
        assert w[0, 0] == 0 and w[-1, 1] == T  # complete: the windows cover [0, T)
        np.testing.assert_array_equal(w[1:, 0], w[:-1, 1])
    closes = [t for t in range(T) if s.closes_after(t)]
    running = s.windows(T, complete=False)
    np.testing.assert_array_equal(running[:, 1] - 1, closes)  # a row ends where one closes
    assert len(running) == s.n_rows(T, False) and len(w) == s.n_rows(T, True)
    assert (w[:, 1] - w[:, 0]).max(initial=1) <= max(s.stride, 1)


def test_dense_then_windows():
    w = RowSchedule.parse("dense:3,4").windows(12)
    assert w.tolist() == [[0, 1], [1, 2], [2, 3], [3, 7], [7, 11], [11, 12]]


def test_bfloat16_keeps_zeros_signs_and_tiny_values():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(100_000) * 10.0 ** rng.uniform(-30, 5, 100_000)).astype(np.float32)
    x[:5] = [0.0, -0.0, 1e-38, -1e-38, 3.0e38]
    y = from_bfloat16(to_bfloat16(x))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(np.signbit(y), np.signbit(x))
    np.testing.assert_array_equal(y == 0, x == 0)
    normal = np.abs(x) >= np.finfo(np.float32).tiny  # subnormals keep fewer bits, never 0
    rel = np.abs(y.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    assert np.nanmax(rel[normal]) <= 2.0 ** -8  # round to nearest: 8 significant bits
    assert np.all(y[(x != 0) & ~normal] != 0)
    assert np.isnan(from_bfloat16(to_bfloat16(np.array([np.nan], np.float32))))[0]
    exact = np.array([1.0, -2.5, 0.15625], np.float32)  # fits in 8 significant bits
    np.testing.assert_array_equal(from_bfloat16(to_bfloat16(exact)), exact)


def test_bfloat16_rounds_to_nearest_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)  # bfloat16 spacing at 1
    x = np.array([one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + ulp / 64], np.float32)
    assert from_bfloat16(to_bfloat16(x)).tolist() == [1.0, 1.0 + 2 * ulp, 1.0 + ulp]


def test_column_ranges_follow_layers_and_merge_neighbours():
    offsets = np.array([0, 6, 8, 20, 24, 30])  # fc1.w, fc1.b, fc2.w, fc2.b, fc3.w
    layer = np.array([0, 0, 1, 1, 2])
    names = ["fc1", "fc2", "fc3"]
    assert column_ranges(offsets, layer, names, None).tolist() == [[0, 30]]
    assert column_ranges(offsets, layer, names, ["fc1", "fc3"]).tolist() == [[0, 8], [24, 30]]
    assert column_ranges(offsets, layer, names, ["fc2", "fc1"]).tolist() == [[0, 24]]
    assert column_ranges(offsets, layer, names, []).shape == (0, 2)
    np.testing.assert_array_equal(ranges_index(np.array([[0, 2], [5, 7]])), [0, 1, 5, 6])
    with pytest.raises(ScheduleError, match="no layer named conv9"):
        column_ranges(offsets, layer, names, ["conv9"])
