"""Run metadata and the layout of the (R, P) matrix: status attributes, the parameter table,
which columns belong to a layer or tensor, and which iterations a row sums."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
        return "trajectory" in self._f

    @property
    def has_val(self) -> bool:
        return "lca_val" in self._f

    @property
    def has_class_layer(self) -> bool:
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

    def iteration_of_row(self, r: int) -> tuple[int, int]:
        """Iterations ``[start, end)`` summed in row ``r`` (the last window may be partial)."""
        S = self.stride
        return r * S, min((r + 1) * S, self.n_iters)

    def row_of_iteration(self, t: int) -> int:
        """The row whose window contains iteration ``t``."""
        return t // self.stride
