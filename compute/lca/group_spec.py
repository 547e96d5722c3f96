"""A user's named groups, ``{name: [(parameter name, selection), ...]}``, as flat ranges.

The selection convention is in :mod:`compute.nets.groups`' docstring. :func:`resolve_groups`
checks the spec against the param table with an error that names the group and parameter,
and fills what no group covers with one group per layer, so the result partitions the
parameters as ``params/groups`` and :func:`compute.engine.record.record` need.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping

from torch import nn

from compute.lca.params import ParamTable

Group = tuple[str, list[tuple[int, int]]]


def selection_ranges(sel, shape: tuple[int, ...], where: str) -> list[tuple[int, int]]:
    """Flat ``[start, end)`` ranges, within one parameter of ``shape``, of the selection
    ``sel`` (``None``, a ``range`` of flat elements, or an index of slices and ints); sorted.

    Raises:
        ValueError: out of range, a step other than 1, more indices than axes.
        TypeError: a selection of another kind.
    """
    numel = math.prod(shape)
    if sel is None or sel is Ellipsis:
        return [(0, numel)] if numel else []
    if isinstance(sel, range):
        if sel.step != 1 or not 0 <= sel.start < sel.stop <= numel:
            raise ValueError(f"{where}: {sel} is not a range of step 1 inside its {numel} "
                             f"elements (shape {shape})")
        return [(sel.start, sel.stop)]
    index = sel if isinstance(sel, tuple) else (sel,)
    if len(index) > len(shape):
        raise ValueError(f"{where}: {len(index)} indices for a tensor of shape {shape}")
    bounds = [_axis_bounds(i, n, axis, shape, where) for axis, (i, n) in
              enumerate(zip(index, shape, strict=False))] + [(0, n) for n in shape[len(index):]]
    partial = [a for a, (s, e) in enumerate(bounds) if (s, e) != (0, shape[a])]
    if not partial:
        return [(0, numel)]
    k = partial[-1]  # axes after k are whole: each index of axes 0..k-1 is one run
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    length = (bounds[k][1] - bounds[k][0]) * strides[k]
    if length == 0:  # a zero-size trailing axis: nothing selected
        return []
    out = []
    for outer in itertools.product(*(range(s, e) for s, e in bounds[:k])):
        start = sum(i * strides[a] for a, i in enumerate(outer)) + bounds[k][0] * strides[k]
        out.append((start, start + length))
    return out


def _axis_bounds(i, n: int, axis: int, shape, where: str) -> tuple[int, int]:
    """``[start, stop)`` of one index on an axis of length n (negative ints count from the
    end, as in Python); out-of-range bounds are an error, never clamped."""
    if isinstance(i, slice):
        if i.step not in (None, 1):
            raise ValueError(f"{where}: slice {i} on axis {axis}: only step 1 is supported")
        start = 0 if i.start is None else _int(i.start, where)
        stop = n if i.stop is None else _int(i.stop, where)
        start, stop = start + (n if start < 0 else 0), stop + (n if stop < 0 else 0)
        if not 0 <= start < stop <= n:
            raise ValueError(f"{where}: slice {i} on axis {axis} is empty or outside "
                             f"0..{n} (shape {shape})")
        return start, stop
    j = _int(i, where)
    j += n if j < 0 else 0
    if not 0 <= j < n:
        raise ValueError(f"{where}: index {i} on axis {axis} is outside 0..{n - 1} "
                         f"(shape {shape})")
    return j, j + 1


def _int(v, where: str) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{where}: a selection is None, a range, or slices and ints; got "
                        f"{v!r}")
    return v.__index__()


def resolve_groups(spec: Mapping, table: ParamTable, *, model: nn.Module | None = None,
                   skip_untracked: bool = False) -> list[Group]:
    """Flat ranges of a group spec on ``table``, completed to a partition.

    Args:
        spec: ``{name: [(parameter name, selection) or parameter name, ...]}``.
        table: the parameters θ consists of (e.g. ``param_table(model, trainable names)``).
        model: tells a frozen parameter (left out of ``table``) from a misspelt one.
        skip_untracked: leave out parameters of ``model`` not in ``table`` (and groups left
            empty by that) instead of refusing them.

    Returns:
        ``[(name, [(start, end), ...]), ...]`` sorted by first range: the spec's groups and
        one fill group per layer for what they leave out; every flat index exactly once.

    Raises:
        TypeError: the spec is not a dict of lists of pairs.
        ValueError: an unknown or untracked parameter, an out-of-range selection, an empty
            group, a group across layers, overlapping groups, a fill name already taken.
    """
    if not isinstance(spec, Mapping):
        raise TypeError("groups must be a dict name -> [(parameter name, selection), ...], a "
                        f"callable model -> such a dict, or 'heads'; got {type(spec).__name__}")
    position = {name: i for i, name in enumerate(table.names)}
    everything = {n for n, _ in model.named_parameters()} if model is not None else set()
    found: dict[str, list[tuple[int, int]]] = {}
    for name, entries in spec.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"group names are non-empty strings, got {name!r}")
        if isinstance(entries, (str, tuple)) or not hasattr(entries, "__iter__"):
            raise TypeError(f"group {name!r}: give a list of (parameter name, selection) "
                            f"pairs, got {type(entries).__name__}")
        ranges, layers = [], set()
        for entry in entries:
            pname, sel = (entry, None) if isinstance(entry, str) else _pair(entry, name)
            if pname not in position:
                if skip_untracked and pname in everything:
                    continue
                raise ValueError(_unknown(name, pname, position, everything))
            i = position[pname]
            offset = int(table.offsets[i])
            where = f"group {name!r}, parameter {pname!r}"
            ranges += [(offset + s, offset + e) for s, e in
                       selection_ranges(sel, table.shapes[i], where)]
            layers.add(int(table.layer[i]))
        if len(layers) > 1:
            raise ValueError(f"group {name!r} spans layers "
                             f"{', '.join(table.layer_names[li] for li in sorted(layers))}: "
                             "a group must lie inside one layer (split it, one per module)")
        if ranges:
            found[name] = ranges
        elif not skip_untracked:
            raise ValueError(f"group {name!r} selects no parameters")
    _check_disjoint(found, table)
    return _with_fill(found, table)


def _pair(entry, group: str) -> tuple[str, object]:
    if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
        raise TypeError(f"group {group!r}: entries are (parameter name, selection) pairs or "
                        f"parameter names, got {entry!r}")
    return entry[0], entry[1]


def _unknown(group: str, pname: str, position: dict, everything: set) -> str:
    if pname in everything:
        return (f"group {group!r}: parameter {pname!r} is not tracked (it does not require "
                "grad, so it is not part of θ)")
    close = difflib.get_close_matches(pname, list(position), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"group {group!r}: the model has no parameter {pname!r}{hint}"


def _check_disjoint(found: dict[str, list[tuple[int, int]]], table: ParamTable) -> None:
    spans = sorted((s, e, name) for name, ranges in found.items() for s, e in ranges)
    for (_, e0, a), (s1, _, b) in zip(spans, spans[1:], strict=False):
        if s1 < e0:
            i = int(table.offsets.searchsorted(s1, side="right")) - 1
            pname, off = table.names[i], int(table.offsets[i])
            what = (f"group {a!r} selects some of them twice" if a == b
                    else f"groups {a!r} and {b!r} overlap")
            raise ValueError(f"{what}: parameter {pname!r}, flat elements "
                             f"[{s1 - off}, {min(e0, int(table.offsets[i + 1])) - off})")


def _with_fill(found: dict[str, list[tuple[int, int]]], table: ParamTable) -> list[Group]:
    """The groups, merged and sorted, plus one group per layer of what they leave out."""
    covered = sorted(r for ranges in found.values() for r in ranges)
    touched = {int(table.layer[int(table.offsets.searchsorted(s, side="right")) - 1])
               for s, _ in covered}
    fill: dict[str, list[tuple[int, int]]] = {}
    k = 0
    for i in range(len(table.names)):
        start, end, li = int(table.offsets[i]), int(table.offsets[i + 1]), int(table.layer[i])
        gaps, pos = [], start
        while k < len(covered) and covered[k][0] < end:
            s, e = covered[k]
            if s > pos:
                gaps.append((pos, s))
            pos, k = e, k + 1
        if pos < end:
            gaps.append((pos, end))
        if gaps:
            layer = table.layer_names[li]
            fill.setdefault(f"{layer}.rest" if li in touched else layer, []).extend(gaps)
    taken = set(found) & set(fill)
    if taken:
        raise ValueError(f"group name {sorted(taken)[0]!r} is also the name of what no group "
                         "covers in its layer: rename the group or cover the whole layer")
    out = [(name, _merged(ranges)) for name, ranges in {**found, **fill}.items()]
    return sorted(out, key=lambda g: g[1][0][0])


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged
