"""Named parameter groups finer than layers (``params/groups``): a transformer's attention
heads, for example. Each group is a list of flat ``[start, end)`` ranges inside one layer;
the per-iteration ``lca_group`` (T, G) sums the LCA over each group, as ``lca_layer`` does
over layers (numpy + h5py only)."""

from __future__ import annotations

from collections.abc import Sequence

import h5py
import numpy as np

from lcaviz.bundle.h5dataset import STR, make_dataset

GroupSpec = tuple[str, Sequence[tuple[int, int]]]


def group_layers(groups: Sequence[GroupSpec], offsets: np.ndarray,
                 tensor_layer: np.ndarray) -> np.ndarray:
    """The layer each group lies in, (G,) int32; ValueError for a range outside 0..P, an
    empty group or one that spans layers."""
    P = int(offsets[-1])
    col_layer = np.repeat(np.asarray(tensor_layer), np.diff(offsets))  # (P,)
    out = []
    for name, ranges in groups:
        owners: set[int] = set()
        if not ranges:
            raise ValueError(f"group {name!r} has no parameters")
        for s, e in ranges:
            if not 0 <= s < e <= P:
                raise ValueError(f"group {name!r}: range [{s}, {e}) outside 0..{P}")
            owners |= set(np.unique(col_layer[s:e]).tolist())
        if len(owners) != 1:
            raise ValueError(f"group {name!r} spans layers {sorted(owners)}: a group must lie "
                             "inside one layer")
        out.append(owners.pop())
    return np.asarray(out, np.int32)


def write_groups(params: h5py.Group, groups: Sequence[GroupSpec], offsets: np.ndarray,
                 tensor_layer: np.ndarray) -> None:
    """``params/groups``: names (G,), ranges (K, 3) ``[group, start, end)``, layer (G,)."""
    layer = group_layers(groups, offsets, tensor_layer)
    ranges = np.asarray([(k, s, e) for k, (_, rs) in enumerate(groups) for s, e in rs],
                        np.int64).reshape(-1, 3)
    g = params.create_group("groups")
    make_dataset(g, "names", (len(groups),), STR, "group names",
                 data=[name for name, _ in groups])
    make_dataset(g, "ranges", ranges.shape, np.int64,
                 "[group, start, end) flat parameter ranges of each group", data=ranges)
    make_dataset(g, "layer", (len(groups),), np.int32, "the layer each group lies in",
                 data=layer)


def read_groups(params: h5py.Group, n_layers: int, n_params: int
                ) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(names, ranges (K, 3), layer (G,), problems) of ``params/groups``."""
    g = params["groups"]
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in g["names"][()]]
    ranges = np.asarray(g["ranges"][()], np.int64).reshape(-1, 3)
    layer = np.asarray(g["layer"][()], np.int64)
    G, problems = len(names), []
    if layer.shape != (G,) or (G and (layer.min() < 0 or layer.max() >= n_layers)):
        problems.append(f"params/groups/layer has {layer.shape} entries or layers outside "
                        f"0..{n_layers - 1}, expected ({G},)")
    if len(ranges) and (ranges[:, 0].min() < 0 or ranges[:, 0].max() >= G
                        or ranges[:, 1].min() < 0 or ranges[:, 2].max() > n_params
                        or np.any(ranges[:, 2] <= ranges[:, 1])):
        problems.append("params/groups/ranges holds groups or ranges that do not exist")
    return names, ranges, layer, problems


def group_sizes(ranges: np.ndarray, n_groups: int) -> np.ndarray:
    """Parameters per group, (G,) int64."""
    sizes = np.zeros(n_groups, np.int64)
    np.add.at(sizes, ranges[:, 0], ranges[:, 2] - ranges[:, 1])
    return sizes


class _BundleGroups:
    """Group accessors of :class:`~lcaviz.bundle.RunBundle` (a mixin: the reader provides
    ``_f``, ``_series``, ``gaps``, ``n_iters``, ``n_layers`` and ``n_params``)."""

    @property
    def has_groups(self) -> bool:
        """Whether the bundle has named parameter groups (``params/groups``)."""
        return "params/groups" in self._f

    def _groups_meta(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        if not hasattr(self, "_groups_cache"):
            if not self.has_groups:
                raise KeyError(f"{self.path}: no parameter groups (params/groups)")
            names, ranges, layer, _ = read_groups(self._f["params"], self.n_layers,
                                                  self.n_params)
            self._groups_cache = (names, ranges, layer)
        return self._groups_cache

    @property
    def group_names(self) -> list[str]:
        return list(self._groups_meta()[0])

    @property
    def group_layer(self) -> np.ndarray:
        """The layer index of each group, (G,) int64."""
        return self._groups_meta()[2]

    @property
    def group_sizes(self) -> np.ndarray:
        names, ranges, _ = self._groups_meta()
        return group_sizes(ranges, len(names))

    def group_columns(self, group: int | str) -> np.ndarray:
        """Flat parameter indices of one group (by index or name), sorted int64."""
        names, ranges, _ = self._groups_meta()
        g = names.index(group) if isinstance(group, str) else int(group)
        rs = ranges[ranges[:, 0] == g]
        return np.concatenate([np.arange(s, e) for _, s, e in rs] or [np.zeros(0, np.int64)])

    def lca_group(self, gaps: float = 0.0) -> np.ndarray | None:
        """LCA per group and iteration, (T, G) float64, or None without groups."""
        x = self._series("lca_group", self.n_iters, optional=True)
        return None if x is None else self.gaps(x, gaps)

    def lca_val_group(self, gaps: float = 0.0) -> np.ndarray | None:
        """Validation LCA per group and iteration, (T, G), or None."""
        x = self._series("lca_val_group", self.n_iters, optional=True)
        return None if x is None else self.gaps(x, gaps)
