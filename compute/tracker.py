"""LCA of your own training loop: :class:`LCATracker` writes a standard, live run bundle.

    with LCATracker(model, X, y, out="runs/mine.h5", lca_rows="dense:200,10") as lca:
        for xb, yb in loader:
            opt.zero_grad(); loss = F.cross_entropy(model(xb), yb); loss.backward(); opt.step()
            lca.step(minibatch_loss=loss.item())   # after every optimizer step

The tracker snapshots θ at entry, then allocates each step θ_t → θ_{t+1} online with the same
integrator, record and writer as ``lca-run`` (O(P) state; the fixed set's loss is the one
allocated), so the dashboard shows the run while it trains. It closes the bundle ``complete``,
or ``failed`` with the exception's message if the block raises (the exception propagates).
Parameters that do not require grad are left out of θ and listed in the bundle's config.
A tracked run cannot be resumed (``lca-run --resume`` needs the training loop it owns).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import torch
from torch import nn

from compute import __version__
from compute.checkpoint import RunState, check_out_path
from compute.lca import LCAIntegrator
from compute.objective import FullDatasetObjective, LossFn, per_example_cross_entropy
from compute.oscillation import count_gradient
from compute.params import flat_params, param_table, trainable_names
from compute.record import closing_attrs, host, record, write_counters
from lcaviz.bundle.schema import RowSchedule, column_ranges, ranges_index
from lcaviz.bundle.writer import BundleWriter, LayoutInfo

COUNTERS_EVERY = 50  # steps between writes of the per-parameter counters (a live run's lag)


def fixed_set(inputs, targets=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the fixed set whose loss is allocated, from tensors, a Dataset of
    ``(x, y)`` items or a DataLoader of ``(x, y)`` batches (iterated once, in order)."""
    if isinstance(inputs, torch.Tensor):
        if targets is None:
            raise ValueError("LCATracker: targets are needed with an inputs tensor")
        return inputs, torch.as_tensor(targets)
    if targets is not None:
        raise ValueError("LCATracker: pass targets only with an inputs tensor (a Dataset or "
                         "DataLoader yields (x, y) itself)")
    xs, ys = [], []
    batched = isinstance(inputs, torch.utils.data.DataLoader)
    for item in inputs:
        x, y = item[0], item[1]
        xs.append(torch.as_tensor(x) if batched else torch.as_tensor(x)[None])
        ys.append(torch.as_tensor(y).reshape(-1))
    if not xs:
        raise ValueError("LCATracker: the fixed set is empty")
    return torch.cat(xs), torch.cat(ys)


@dataclass
class TrackedRun:
    """What :func:`compute.record.record` needs to know about a run (as ``train.Run``)."""

    table: object
    y: torch.Tensor
    layer_idx: torch.Tensor
    schedule: RowSchedule
    row_ranges: np.ndarray
    row_idx: torch.Tensor | None
    cfg: SimpleNamespace
    val_lca: LCAIntegrator | None = None
    names: list[str] = field(default_factory=list)  # the parameters θ consists of

    @property
    def n_row_cols(self) -> int:
        return int((self.row_ranges[:, 1] - self.row_ranges[:, 0]).sum())


class LCATracker:
    """Online LCA of any ``nn.Module`` trained by any loop and optimizer (exact gradients).

    Args:
        model: the network being trained (read, never modified; a private copy evaluates the
            allocated loss with dropout off and BatchNorm on fixed chunks).
        inputs: the fixed set whose loss is allocated: a tensor (with ``targets``), a
            ``Dataset`` of ``(x, y)`` or a ``DataLoader`` over it.
        targets: labels (N,) with an inputs tensor.
        out: bundle path; an existing file is refused unless ``overwrite``.
        method: ``first_order``, ``trapezoid``, ``rk4`` or ``adaptive``.
        per_class: also split each layer's LCA per class (labels must be class indices).
        loss_fn: per-example loss ``(outputs, targets) -> (N,)``; default cross-entropy.
        n_classes: number of classes (default: ``max(targets) + 1`` for integer labels).
        lca_rows: row schedule (``"1"``, ``"dense:200,10"``, ...).
        lca_layers: layer names that get per-parameter rows (None: all, []: none).
        lca_storage: ``"float32"`` or ``"bfloat16"``.
        optimizer: the training optimizer, recorded (class and param-group settings).
        val_inputs, val_targets: a second fixed set whose loss change is allocated too.
        tol, max_halvings: adaptive settings. chunk_size: examples per pass, or ``"auto"``
            (the largest that fits the memory budget; never changes the loss without
            BatchNorm). bn_group: BatchNorm models: examples per normalisation group (default
            1000; see ``FullDatasetObjective``).
        overwrite: replace an existing ``out``.
        flush_seconds: the writer publishes new iterations at least this often.
    """

    def __init__(self, model: nn.Module, inputs, targets=None, *, out: str | Path,
                 method: str = "rk4", per_class: bool = True, loss_fn: LossFn | None = None,
                 n_classes: int | None = None, lca_rows: str | int = 1,
                 lca_layers: list[str] | None = None, lca_storage: str = "float32",
                 lca_compression: str = "none", optimizer: torch.optim.Optimizer | None = None,
                 val_inputs=None, val_targets=None, tol: float = 1e-3, max_halvings: int = 8,
                 chunk_size: int | str = "auto", overwrite: bool = False,
                 flush_seconds: float = 2.0, bn_group: int | None = None):
        self.model, self.out = model, Path(out)
        self.x, self.y = fixed_set(inputs, targets)
        self.val = fixed_set(val_inputs, val_targets) if val_inputs is not None else None
        self.loss_fn = loss_fn or per_example_cross_entropy
        labels = not self.y.is_floating_point()
        if per_class and not labels:
            raise ValueError("LCATracker: per_class needs integer class labels as targets")
        self.n_classes = int(n_classes or (int(self.y.max()) + 1 if labels else 1))
        self.options = dict(method=method, per_class=per_class, lca_rows=str(lca_rows),
                            lca_layers=lca_layers, lca_storage=lca_storage,
                            lca_compression=lca_compression, tol=tol,
                            max_halvings=max_halvings, chunk_size=chunk_size, bn_group=bn_group)
        self.optimizer, self.overwrite, self.flush_seconds = optimizer, overwrite, flush_seconds
        self.writer: BundleWriter | None = None
        self.t = 0

    # -- the with block ---------------------------------------------------------------------
    def __enter__(self) -> LCATracker:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.close()
        else:
            self.fail(f"{exc_type.__name__}: {exc}")
        return False  # never swallow the exception

    def start(self) -> None:
        """Snapshot θ_0, evaluate the fixed set's loss and gradient there, create the bundle."""
        check_out_path(self.out, self.overwrite)
        o, model = self.options, self.model
        names = trainable_names(model)
        if not names:
            raise ValueError("LCATracker: the model has no parameter that requires grad")
        self.frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        table = param_table(model, names)
        device = next(model.parameters()).device
        ranges = column_ranges(table.offsets, table.layer, table.layer_names, o["lca_layers"])
        full = len(ranges) == 1 and ranges[0, 0] == 0 and ranges[0, 1] == table.n_params
        cfg = SimpleNamespace(save_trajectory=False, **o)
        self.integ = self._integrator(self.x, self.y, names)
        self.run = TrackedRun(
            table=table, y=self.integ.objective.y, names=names,
            layer_idx=torch.as_tensor(table.param_layer_index(), device=device),
            schedule=RowSchedule.parse(o["lca_rows"]), row_ranges=ranges,
            row_idx=None if full else torch.as_tensor(ranges_index(ranges), device=device),
            cfg=cfg, val_lca=self._integrator(*self.val, names) if self.val else None)
        self.state = RunState(table.n_params, self.run.n_row_cols, device, self.val is not None)
        theta = flat_params(model, names)
        e0 = self.integ.start(theta)
        v0 = self.run.val_lca.start(theta) if self.run.val_lca else None
        count_gradient(self.state, e0.grad)
        self.writer = BundleWriter.create(
            self.out, self._layout(), theta0=None, loss_train0=float(e0.loss),
            acc_train0=int(e0.correct) / len(self.run.y),
            loss_val0=float(v0.loss) if v0 else None,
            acc_val0=int(v0.correct) / len(self.run.val_lca.objective.y) if v0 else None,
            flush_seconds=self.flush_seconds)

    def step(self, minibatch_loss: float = float("nan")) -> None:
        """Allocate the step from the last θ to the model's current parameters (call it after
        every optimizer step)."""
        if self.writer is None:
            raise RuntimeError("LCATracker.step() outside its with block (or before start())")
        t0 = time.perf_counter()
        theta = flat_params(self.model, self.run.names)
        st = self.integ.step(theta)
        vst = self.run.val_lca.step(theta) if self.run.val_lca else None
        rec = record(self.run, st, vst, self.state, float(minibatch_loss), theta, self.t,
                     time.perf_counter() - t0)
        self.writer.append(rec)
        self.t += 1
        if self.t % COUNTERS_EVERY == 0:
            write_counters(self.writer, self.run, self.state)

    def close(self) -> Path:
        """Append the open row window, write the counters and close the bundle ``complete``."""
        if self.writer is None:
            return self.out
        if self.t and not self.run.schedule.closes_after(self.t - 1):
            if self.state.window_val is not None:
                self.writer.append_lca_row(host(self.state.window_val), "lca_val")
            self.writer.append_lca_row(host(self.state.window))
        write_counters(self.writer, self.run, self.state)
        self.writer.close("complete", attrs=closing_attrs(self.state, self.options["method"]))
        self.writer = None
        return self.out

    def fail(self, reason: str) -> None:
        """Close the bundle ``failed`` with ``reason``; what was written stays readable."""
        if self.writer is not None:
            try:
                write_counters(self.writer, self.run, self.state)
            finally:
                self.writer.close("failed", reason)
                self.writer = None

    # -- helpers ----------------------------------------------------------------------------
    def _integrator(self, x: torch.Tensor, y: torch.Tensor, names: list[str]) -> LCAIntegrator:
        o = self.options
        obj = FullDatasetObjective(self.model, x, y, n_classes=self.n_classes,
                                   chunk_size=o["chunk_size"], bn_group=o["bn_group"],
                                   per_class=o["per_class"],
                                   loss_fn=self.loss_fn, param_names=names)
        return LCAIntegrator(obj, o["method"], tol=o["tol"], max_halvings=o["max_halvings"])

    def _layout(self) -> LayoutInfo:
        t, o, model = self.run.table, self.options, self.model
        opt = self.optimizer
        groups = [{k: v for k, v in g.items() if k != "params" and _jsonable(v)}
                  for g in opt.param_groups] if opt is not None else None
        config = {
            "source": "LCATracker", "net": type(model).__name__, "dataset": "fixed set",
            "optimizer": type(opt).__name__ if opt is not None else "unknown",
            "optimizer_groups": groups, "lr": groups[0].get("lr") if groups else None,
            "n_examples": len(self.x), "loss_fn": getattr(self.loss_fn, "__name__", "custom"),
            "parameters": list(t.names), "frozen_params": self.frozen,
            "val_lca": self.val is not None, **o, "chunks": self.integ.objective.chunk_info,
        }
        device = next(model.parameters()).device
        software = {"lca_explorer": __version__, "python": platform.python_version(),
                    "torch": torch.__version__, "numpy": np.__version__,
                    "h5py": h5py.__version__}
        return LayoutInfo(
            t.names, t.shapes, t.offsets, t.layer, t.module_type, t.layer_names,
            [str(c) for c in range(self.n_classes)], config, o["method"],
            per_class=o["per_class"], val_lca=self.val is not None,
            device_name=str(device), software=software, row_schedule=self.run.schedule.spec,
            row_columns=self.run.row_ranges, lca_storage=o["lca_storage"],
            compression=o["lca_compression"], max_halvings_flags=o["method"] == "adaptive",
            oscillation_counters=True)


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None))) or (
        isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v))
