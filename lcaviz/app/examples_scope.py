"""What the Examples section ranks: the split (training or validation examples) and the scope
(all layers, one layer, one split group, or one attention head: the sum of its q/k/v/o
groups), and where each one's per-example values are in the bundle (``by`` layer or group,
and the columns summed). Pure functions of an open :class:`~lcaviz.bundle.RunBundle`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lcaviz.analysis.examples import scope_columns

SPLITS = {"train": "training examples", "val": "validation examples"}
# "<prefix>.<proj>.head<h>": the groups of one head in q / k / v / o (compute/nets/groups.py)
HEAD_NAME = re.compile(r"^(?P<prefix>.+)\.(?P<proj>[^.]+)\.head(?P<h>\d+)$")


@dataclass(frozen=True)
class Source:
    """Where a scope's values are: ``by`` ("layer" | "group"), the columns summed, a name."""

    by: str
    cols: list[int]
    name: str


def checked_split(b, split: str | None) -> str:
    """``split`` (None or "" = "train"); ValueError for one the run does not store."""
    split = split or "train"
    if split not in SPLITS:
        raise ValueError("unknown examples split (expected 'train' or 'val')")
    if split == "val" and not b.has_val_examples:
        raise ValueError("this run stores no per-example LCA of its validation examples "
                         "(lca-run --per-example with --val-lca)")
    return split


def split_options(b) -> list[dict]:
    """The train / validation choice ([] for a run without validation examples)."""
    if not getattr(b, "has_val_examples", False):
        return []
    return [{"label": label, "value": v} for v, label in SPLITS.items()]


def _stored_groups(b, split: str) -> list[str]:
    """The split groups with per-example values of ``split`` (in column order)."""
    return list(b.example_group_names) if b.has_example_set(split, "group") else []


def head_columns(names: list[str]) -> dict[str, tuple[str, int, list[str], list[int]]]:
    """Heads whose groups follow ``<prefix>.<proj>.head<h>`` in two or more projections:
    ``"<prefix>.head<h>"`` → (prefix, h, projections, columns into ``names``). Their sum is
    exact: the groups are disjoint parameters, and LCA is linear in them."""
    found: dict[str, tuple[str, int, list[str], list[int]]] = {}
    for i, name in enumerate(names):
        m = HEAD_NAME.match(name)
        if m:
            key = f"{m['prefix']}.head{int(m['h'])}"
            entry = found.setdefault(key, (m["prefix"], int(m["h"]), [], []))
            entry[2].append(m["proj"])
            entry[3].append(i)
    return {k: v for k, v in found.items() if len(set(v[2])) > 1}


def scope_options(b, split: str = "train") -> list[dict]:
    """The "examples of" menu: all layers, each layer, every head (its groups' sum) and every
    split group with per-example values for ``split``; the run's other groups are listed
    disabled with the reason."""
    opts = [{"label": "all layers (their sum)", "value": "all"}]
    opts += [{"label": str(n), "value": f"layer:{i}"} for i, n in enumerate(b.layer_names)]
    if not getattr(b, "has_groups", False):
        return opts
    stored = _stored_groups(b, split)
    for key, (prefix, h, projs, _) in head_columns(stored).items():
        opts.append({"label": f"head {h} of {prefix} ({' + '.join(projs)})",
                     "value": f"head:{key}"})
    split_ones = set(b.example_group_names) if b.has_example_groups else set()
    for g in b.group_names:
        if g in stored:
            opts.append({"label": str(g), "value": f"group:{g}"})
        else:
            why = ("per-example values are stored per layer" if not split_ones else
                   "not stored for the validation examples" if g in split_ones else
                   "the whole layer: choose the layer")
            opts.append({"label": f"{g} ({why})", "value": f"group:{g}", "disabled": True})
    return opts


def scope_source(b, scope: str | None, split: str = "train") -> Source:
    """Where the values of ``scope`` are for ``split``.

    Raises:
        ValueError: a scope the run has no per-example values for (the message never echoes
            the scope: it comes from the browser).
    """
    scope = scope or "all"
    if scope.startswith("head:"):
        heads = head_columns(_stored_groups(b, split))
        key = scope[len("head:"):]
        if key not in heads:
            raise ValueError("unknown examples scope (no such head with per-example values)")
        prefix, h, projs, cols = heads[key]
        return Source("group", cols, f"head {h} of {prefix}")
    if scope.startswith("group:"):
        stored = _stored_groups(b, split)
        cols = scope_columns(scope, b.n_layers, {g: [i] for i, g in enumerate(stored)})
        return Source("group", cols, str(stored[cols[0]]))
    cols = scope_columns(scope, b.n_layers)
    name = "all layers" if len(cols) == b.n_layers and b.n_layers > 1 else \
        ", ".join(str(b.layer_names[c]) for c in cols)
    return Source("layer", cols, name)
