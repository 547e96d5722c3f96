"""Bundles with a known answer for the lcaviz tests: written from an explicit (T, P) matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lcaviz.bundle.writer import BundleWriter, IterationRecord, LayoutInfo, layer_stats

SMALL_LAYERS = (("fc1", (24, 30)), ("fc2", (12, 24)), ("fc3", (10, 12)))


def matrix_bundle(path: str | Path, lca: np.ndarray, layer_sizes: list[int], *,
                  stride: int = 1, class_layer: np.ndarray | None = None,
                  trajectory: np.ndarray | None = None, status: str = "complete",
                  cumsum_every: int = 4, n_classes: int = 3,
                  groups: list[tuple[str, list[tuple[int, int]]]] | None = None,
                  config: dict | None = None) -> Path:
    """Write per-iteration LCA ``lca`` (T, P) as a bundle of single-tensor Linear layers.

    ``class_layer`` (T, C, L) overrides the default split (layer LCA shared equally);
    ``groups`` are named ``[start, end)`` column ranges (``lca_group`` is their exact sums);
    ``config`` is added to the bundle's config.
    """
    lca = np.asarray(lca, np.float32)
    T, P = lca.shape
    L = len(layer_sizes)
    assert sum(layer_sizes) == P
    offsets = np.concatenate([[0], np.cumsum(layer_sizes)]).astype(np.int64)
    layer_of = np.repeat(np.arange(L), layer_sizes)
    C = class_layer.shape[1] if class_layer is not None else n_classes
    layout = LayoutInfo(
        param_names=[f"l{i}.weight" for i in range(L)],
        param_shapes=[(s,) for s in layer_sizes], param_offsets=offsets,
        param_layer=np.arange(L, dtype=np.int32), param_module_type=["Linear"] * L,
        layer_names=[f"l{i}" for i in range(L)], class_names=[f"c{c}" for c in range(C)],
        config={"net": "matrix", "dataset": "test", "optimizer": "sgd", **(config or {})},
        method="rk4", lca_stride=stride, iters_planned=T,
        save_trajectory=trajectory is not None, cumsum_every=cumsum_every, groups=groups)
    theta0 = trajectory[0] if trajectory is not None else None
    w = BundleWriter.create(path, layout, theta0=theta0, loss_train0=2.0, acc_train0=0.1,
                            flush_seconds=0.0)
    loss, window = 2.0, np.zeros(P)
    help_iters, nonzero_iters = np.zeros(P, np.int32), np.zeros(P, np.int32)
    for t in range(T):
        a = lca[t].astype(np.float64)
        sums, helped, hurt = layer_stats(a, layer_of, L)
        loss += sums.sum()
        window += a
        help_iters += a < 0
        nonzero_iters += a != 0
        cl = class_layer[t] if class_layer is not None else np.tile(sums / C, (C, 1))
        rec = IterationRecord(loss_train=loss, acc_train=0.5, loss_minibatch=loss,
                              residual=0.0, splits=1, lca_layer=sums, help_count=helped,
                              hurt_count=hurt, seconds=0.01, lca_class_layer=cl)
        if groups:
            rec.lca_group = np.array([sum(a[s:e].sum() for s, e in rs) for _, rs in groups])
        if trajectory is not None:
            rec.theta = trajectory[t + 1]
        if (t + 1) % stride == 0:
            rec.lca_row, window = window, np.zeros(P)
        w.append(rec)
    if status != "running" and T % stride:
        w.append_lca_row(window)
    w.set_param_counters(help_iters, nonzero_iters)
    w.close(status)
    return Path(path)
