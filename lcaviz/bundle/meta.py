"""Run metadata and the layout of the (R, P) matrix: status attributes, the parameter table,
which columns belong to a layer or tensor, and which iterations a row sums."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from lcaviz.bundle.errors import MissingRowsError
from lcaviz.bundle.schema import RowSchedule


class _BundleMeta:
    """Metadata properties of :class:`~lcaviz.bundle.RunBundle` (a mixin over the header that
    :class:`~lcaviz.bundle.h5open._BundleFile` reads)."""

    # -- metadata -----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return str(self._attrs.get("status", ""))

    @property
    def status_reason(self) -> str:
        return str(self._attrs.get("status_reason", ""))

    @property
    def warnings(self) -> list[str]:
        """Warnings the writer recorded at close (root attribute ``warnings``, a JSON list of
        strings; e.g. a cumulative residual over 1 % of the loss change); [] if none."""
        try:
            out = json.loads(self._attrs.get("warnings", "[]"))
        except (json.JSONDecodeError, TypeError):
            return [str(self._attrs.get("warnings"))]
        return [str(w) for w in out] if isinstance(out, list) else [str(out)]

    @property
    def created(self) -> str:
        return str(self._attrs.get("created", ""))

    @property
    def method(self) -> str:
        return str(self._attrs.get("method", ""))

    @property
    def device_name(self) -> str:
        return str(self._attrs.get("device_name", ""))

    @property
    def stride(self) -> int:
        return int(self._attrs.get("lca_stride", 1))

    @property
    def iters_planned(self) -> int:
        return int(self._attrs.get("iters_planned", 0))

    @property
    def n_params(self) -> int:
        return int(self._offsets[-1])

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_trajectory(self) -> bool:
        with self._lock:  # not while another thread refreshes the handle
            return "trajectory" in self._f

    @property
    def has_val(self) -> bool:
        with self._lock:  # not while another thread refreshes the handle
            return "lca_val" in self._f

    @property
    def has_class_layer(self) -> bool:
        with self._lock:  # not while another thread refreshes the handle
            return "lca_class_layer" in self._f

    @property
    def params(self) -> pd.DataFrame:
        """One row per parameter tensor: name, shape, offset, size, layer, layer_name,
        module_type."""
        shapes = [tuple(int(d) for d in s if d >= 0) for s in self._shapes]
        return pd.DataFrame({
            "name": self._names, "shape": shapes, "offset": self._offsets[:-1],
            "size": np.diff(self._offsets), "layer": self._tensor_layer,
            "layer_name": [self.layer_names[i] for i in self._tensor_layer],
            "module_type": self._module_type,
        })

    def layer_index(self, layer: int | str) -> int:
        """Index of a layer given by index (negative allowed) or name."""
        if isinstance(layer, (int, np.integer)):
            if not -self.n_layers <= layer < self.n_layers:
                raise IndexError(f"layer {layer} out of range (L = {self.n_layers})")
            return int(layer) % self.n_layers
        if layer not in self.layer_names:
            raise KeyError(f"no layer {layer!r}; layers are {self.layer_names}")
        return self.layer_names.index(layer)

    def layer_columns(self, layer: int | str) -> slice | np.ndarray:
        """Columns of a layer's parameters: a slice when contiguous (always, in practice),
        otherwise a sorted int64 index array."""
        li = self.layer_index(layer)
        if li not in self._columns_cache:
            ks = np.nonzero(self._tensor_layer == li)[0]
            starts, ends = self._offsets[ks], self._offsets[ks + 1]
            if len(ks) and np.all(starts[1:] == ends[:-1]):
                cols: slice | np.ndarray = slice(int(starts[0]), int(ends[-1]))
            else:
                pieces = [np.arange(s, e) for s, e in zip(starts, ends, strict=True)]
                cols = np.concatenate(pieces or [np.zeros(0, np.int64)])
            self._columns_cache[li] = cols
        return self._columns_cache[li]

    def tensor_columns(self, name: str) -> slice:
        """Columns of one parameter tensor, e.g. ``"fc1.weight"``."""
        if name not in self._names:
            raise KeyError(f"no parameter tensor {name!r}")
        k = self._names.index(name)
        return slice(int(self._offsets[k]), int(self._offsets[k + 1]))

    def column_layers(self) -> np.ndarray:
        """Layer index of every column, (P,) int64."""
        return np.repeat(self._tensor_layer, np.diff(self._offsets))

    # -- which iterations and columns the per-parameter rows hold ----------------------------
    @property
    def storage(self) -> str:
        """How per-parameter rows are stored: ``"float32"`` or ``"bfloat16"``."""
        return str(self._attrs.get("lca_storage", "float32"))

    @property
    def row_schedule(self) -> RowSchedule:
        """The schedule the run was made with (rows themselves: :attr:`row_windows`)."""
        return RowSchedule.parse(self._attrs.get("lca_rows_spec", self.stride))

    @property
    def row_windows(self) -> np.ndarray:
        """``[first, end)`` iterations summed in each of the R rows, (R, 2) int64."""
        return self._windows

    def iteration_of_row(self, r: int) -> tuple[int, int]:
        """Iterations ``[start, end)`` summed in row ``r`` (the last window may be partial)."""
        a, e = self._windows[r]
        return int(a), int(e)

    def row_of_iteration(self, t: int) -> int:
        """The row whose window contains iteration ``t`` (clipped to the rows there are)."""
        r = int(np.searchsorted(self._windows[:, 1], t, side="right"))
        return min(r, max(self.n_rows - 1, 0))

    def single_iteration_rows(self) -> np.ndarray:
        """Rows that hold exactly one iteration each (distribution statistics use these)."""
        w = self._windows
        return np.nonzero(w[:, 1] - w[:, 0] == 1)[0]

    @property
    def n_row_cols(self) -> int:
        """P_rows: parameters that have per-parameter rows (``P`` unless ``--lca-layers``)."""
        return int((self._ranges[:, 1] - self._ranges[:, 0]).sum())

    @property
    def row_ranges(self) -> np.ndarray:
        """(K, 2) flat parameter ranges with rows, in column order of ``lca``."""
        return self._ranges

    def has_rows(self, layer: int | str) -> bool:
        """Whether ``layer``'s parameters have per-parameter rows in this bundle."""
        try:
            self.stored_columns(self.layer_columns(layer))
        except MissingRowsError:
            return False
        return True

    @property
    def row_layers(self) -> list[int]:
        """Indices of the layers that have per-parameter rows."""
        return [li for li in range(self.n_layers) if int(self.layer_sizes[li]) and
                self.has_rows(li)]

    def stored_columns(self, cols):
        """Map a parameter-space column selection (None, int, slice, index array or mask over
        P) to the columns of ``lca`` that hold it.

        Raises:
            MissingRowsError: some selected parameter has no per-parameter rows.
        """
        r = self._ranges
        P = self.n_params
        if len(r) == 1 and r[0, 0] == 0 and r[0, 1] == P:
            return cols  # every parameter has rows: the same columns
        if cols is None:
            return None  # all stored columns
        starts = r[:, 0]
        offs = np.concatenate([[0], np.cumsum(r[:, 1] - r[:, 0])])[:-1]
        if isinstance(cols, (int, np.integer)):
            return int(self._map_index(np.array([int(cols) % P]), starts, offs)[0])
        if isinstance(cols, slice):
            a, b, step = cols.indices(P)
            k = int(np.searchsorted(starts, a, side="right")) - 1
            if step == 1 and k >= 0 and b <= r[k, 1] and a < b:
                return slice(int(offs[k] + a - starts[k]), int(offs[k] + b - starts[k]))
            cols = np.arange(a, b, step)
        idx = np.asarray(cols)
        idx = np.nonzero(idx)[0] if idx.dtype == bool else idx.astype(np.int64).ravel()
        return self._map_index(idx, starts, offs)

    def _map_index(self, idx: np.ndarray, starts: np.ndarray, offs: np.ndarray) -> np.ndarray:
        k = np.searchsorted(starts, idx, side="right") - 1
        ends = self._ranges[:, 1] if len(starts) else np.zeros(1, np.int64)
        ok = (k >= 0) & (idx < ends[np.maximum(k, 0)])
        if not np.all(ok):
            first = int(idx[~ok][0])
            layer = self.layer_names[int(self.column_layer(first))]
            raise MissingRowsError(
                f"{self.path}: layer {layer!r} has no per-parameter rows in this run (it was "
                "made with --lca-layers); its per-layer LCA and help/hurt counts are stored")
        return offs[k] + idx - starts[k]

    def column_layer(self, index: int) -> int:
        """Layer of flat parameter ``index``."""
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return int(self._tensor_layer[k])

    def stored_column_layers(self) -> np.ndarray:
        """Layer of every column of ``lca``, (P_rows,) int64."""
        parts = []
        for a, b in self._ranges:
            ks = np.arange(np.searchsorted(self._offsets, a, side="right") - 1,
                           np.searchsorted(self._offsets, b, side="left"))
            lo = np.maximum(self._offsets[ks], a)
            hi = np.minimum(self._offsets[ks + 1], b)
            parts.append(np.repeat(self._tensor_layer[ks], hi - lo))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
