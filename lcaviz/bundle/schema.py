"""The run-bundle format in one place: its name and versions, which per-parameter rows a run
stores (:class:`RowSchedule`, column ranges) and how they are encoded (float32 or bfloat16).

Writer (:mod:`lcaviz.bundle.writer`), reader (:mod:`lcaviz.bundle.reader`) and the docs
(docs/bundle-format.md) all follow this module; nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

FORMAT = "lca-bundle"
FORMAT_VERSION = 4  # written by this version
# 1: rows are windows of `lca_stride`; 2: `lca_rows` gives them; 3: per-example LCA
# (lcaviz.bundle.examples; a version-3 bundle without examples is laid out as version 2);
# 4: per-example values of the validation examples and of split groups (heads), optional
# (lcaviz.bundle.example_sets; a version-4 bundle without them is laid out as version 3)
READABLE_VERSIONS = (1, 2, 3, 4)

STORAGES = ("float32", "bfloat16")
COMPRESSIONS = ("none", "gzip")  # of the per-parameter rows (lossless)
BF16_ENCODING = "bfloat16-array"  # encoding-type of a uint16 dataset holding bfloat16 bits
ROW_SOURCES = ("lca", "lca_val")  # (R, P_rows) datasets that follow the row schedule


class ScheduleError(ValueError):
    """A row schedule or a column selection that cannot be used; the message says why."""


@dataclass(frozen=True)
class RowSchedule:
    """Which iterations share a stored per-parameter row.

    The first ``dense`` iterations get one row each; after them, rows are exact sums over
    windows of ``stride`` iterations. The last window of a finished run may be shorter.
    ``RowSchedule(0, S)`` is the version-1 ``lca_stride = S``.
    """

    dense: int = 0
    stride: int = 1

    def __post_init__(self):
        if self.dense < 0 or self.stride < 1:
            raise ScheduleError(f"row schedule needs dense >= 0 and stride >= 1, got "
                                f"dense={self.dense}, stride={self.stride}")

    @classmethod
    def parse(cls, spec: str | int | RowSchedule) -> RowSchedule:
        """``"5"`` or ``"stride:5"`` (windows of 5), ``"dense:220,5"`` (one row per
        iteration for the first 220, then windows of 5), ``"dense:220"`` (= ``dense:220,1``)."""
        if isinstance(spec, RowSchedule):
            return spec
        text = str(spec).strip().lower()
        if m := re.fullmatch(r"(?:stride:)?(\d+)", text):
            return cls(0, int(m.group(1)))
        if m := re.fullmatch(r"dense:(\d+)(?:,(\d+))?", text):
            return cls(int(m.group(1)), int(m.group(2) or 1))
        raise ScheduleError(f"bad row schedule {spec!r}: use S, stride:S or dense:N,S "
                            "(e.g. dense:220,5)")

    @property
    def spec(self) -> str:
        return f"dense:{self.dense},{self.stride}" if self.dense else f"stride:{self.stride}"

    def closes_after(self, t: int) -> bool:
        """True if a row's window ends with iteration ``t`` (0-based)."""
        return t < self.dense or (t + 1 - self.dense) % self.stride == 0

    def n_rows(self, T: int, complete: bool) -> int:
        """Rows after ``T`` iterations: closed windows, plus the partial one if ``complete``."""
        dense = min(T, self.dense)
        rest = T - dense
        full = rest // self.stride
        return dense + full + (1 if complete and rest % self.stride else 0)

    def windows(self, T: int, complete: bool = True) -> np.ndarray:
        """``[first, end)`` iterations of each row, (R, 2) int64."""
        dense = min(T, self.dense)
        starts = list(range(dense)) + list(range(dense, T, self.stride))
        out = np.array([[s, min(s + (1 if s < self.dense else self.stride), T)]
                        for s in starts], np.int64).reshape(-1, 2)
        return out[: self.n_rows(T, complete)]


def column_ranges(offsets: np.ndarray, tensor_layer: np.ndarray, layer_names: list[str],
                  keep: list[str] | None) -> np.ndarray:
    """Flat parameter ranges ``[start, end)`` with per-parameter rows, (K, 2) int64.

    Args:
        offsets: (n + 1,) flat offsets of the parameter tensors.
        tensor_layer: (n,) layer index of each tensor.
        layer_names: the L layer names.
        keep: layer names to store rows for; None = every layer, [] = none.

    Raises:
        ScheduleError: a name that is not a layer.
    """
    if keep is None:
        return np.array([[0, int(offsets[-1])]], np.int64)
    unknown = [k for k in keep if k not in layer_names]
    if unknown:
        raise ScheduleError(f"--lca-layers: no layer named {', '.join(unknown)}; layers are "
                            f"{', '.join(layer_names)}")
    wanted = {layer_names.index(k) for k in keep}
    ranges: list[list[int]] = []
    for k, li in enumerate(tensor_layer):
        if int(li) not in wanted:
            continue
        a, b = int(offsets[k]), int(offsets[k + 1])
        if ranges and ranges[-1][1] == a:
            ranges[-1][1] = b  # merge neighbours: one range per contiguous run of tensors
        elif b > a:
            ranges.append([a, b])
    return np.array(ranges, np.int64).reshape(-1, 2)


def ranges_index(ranges: np.ndarray) -> np.ndarray:
    """Flat parameter index of every stored column, (P_rows,) int64."""
    parts = [np.arange(a, b, dtype=np.int64) for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even.

    Zeros keep their sign bit, signs never flip, the exponent range is float32's (no
    underflow of small LCA values); with 8 significant bits, rounded, the relative error is
    at most 2⁻⁸ (subnormals below 1.2e-38 keep fewer bits). NaN stays NaN.
    """
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = ((bits + rounding) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(np.asarray(x, np.float32))
    if nan.any():
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out


def from_bfloat16(u: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32 (exact)."""
    return (np.asarray(u, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
