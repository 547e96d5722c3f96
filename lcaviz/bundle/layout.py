"""What a new bundle holds: :class:`LayoutInfo` (the static description of a run),
:class:`IterationRecord` (what one iteration appends) and :func:`create_datasets`, which lays
out every dataset of docs/bundle-format.md with its encoding attributes (numpy + h5py only)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import h5py
import numpy as np

from lcaviz.bundle import counterfactual
from lcaviz.bundle import examples as ex
from lcaviz.bundle.chunks import LCA_CHUNK, layer_stats, lca_chunks  # noqa: F401 - re-exported
from lcaviz.bundle.examples import ExampleInfo
from lcaviz.bundle.groups import write_groups
from lcaviz.bundle.h5dataset import STR, make_dataset  # noqa: F401 - re-exported
from lcaviz.bundle.schema import (
    BF16_ENCODING,
    COMPRESSIONS,
    FORMAT,
    FORMAT_VERSION,
    STORAGES,
    RowSchedule,
    ScheduleError,
)

# per-iteration datasets of length T (the others of length T + 1 hold values at θ_0 … θ_T)
T_DATASETS = ("loss/minibatch", "lca_residual", "splits", "lca_layer", "help_count",
              "hurt_count", "timing/seconds", "lca_class_layer", "lca_val_layer",
              "lca_val_residual", "hit_max_halvings", "loss_change", "lca_group",
              "lca_val_group")
T1_DATASETS = ("loss/train", "accuracy/train", "loss/val", "accuracy/val", "trajectory")
# --lca-error-every: rules compared with the refined quadrature, and the M-length datasets
# (one entry per error iteration, in ``lca_error_iters`` order)
ERROR_RULES = ("first_order", "trapezoid", "rk4", "stored")
ERROR_STATS = "lca_error_stats"
ERROR_LAYER_FIELDS = ("ref_layer", "ref_abs_layer", "nonzero")  # (M, L)
ERROR_RULE_FIELDS = ("rule_sum", "abs_error", "median_rel", "flips")  # (M, 4, L)
M_DATASETS = ("lca_error_iters", "lca_error", f"{ERROR_STATS}/intervals",
              f"{ERROR_STATS}/ref_residual",
              *(f"{ERROR_STATS}/{k}" for k in ERROR_LAYER_FIELDS + ERROR_RULE_FIELDS))
# per-parameter oscillation counters (P,) int32, and their per-layer sums (L, 6) int64
OSC_COUNTERS = ("param_moves", "param_move_changes", "param_grad_signs", "param_grad_changes")
OSC_LAYER_COLUMNS = ("moves", "move_changes", "moving", "grad_signs", "grad_changes",
                     "grad_nonzero")
# cheaper LCA (docs/approximations.md): the allocated iterations (--lca-every K > 1) and the
# full training loss at θ_0, θ_K, ... (--full-loss-every K)
FULL_LOSS_DATASETS = ("full_loss_iters", "full_loss", "full_accuracy")


@dataclass
class LayoutInfo:
    """Static description of a run, written once when the bundle is created."""

    param_names: list[str]
    param_shapes: list[tuple[int, ...]]
    param_offsets: np.ndarray  # (n + 1,) int64
    param_layer: np.ndarray  # (n,) int32
    param_module_type: list[str]
    layer_names: list[str]
    class_names: list[str]
    config: dict
    method: str
    lca_stride: int = 1  # version-1 spelling of row_schedule "stride:S"
    iters_planned: int = 0
    per_class: bool = True
    val_lca: bool = False
    save_trajectory: bool = False
    device_name: str = "cpu"
    software: dict | None = None
    cumsum_every: int = 0  # lca rows between lca_cumsum rows; 0: 64 (float32), 16 (bfloat16)
    row_schedule: str = ""  # RowSchedule spec, e.g. "dense:220,5"; "" = stride:lca_stride
    row_columns: np.ndarray | None = None  # (K, 2) parameter ranges with rows; None = all
    lca_storage: str = "float32"  # or "bfloat16" (per-parameter rows only)
    compression: str = "none"  # or "gzip": lossless gzip + shuffle of the (rows, P) datasets
    lca_error_every: int = 0  # > 0: lca_error* datasets (an error estimate every K iterations)
    counterfactual_every: int = 0  # > 0: counterfactual* datasets (lcaviz.bundle.counterfactual)
    max_halvings_flags: bool = False  # hit_max_halvings (T,) int8 (adaptive runs)
    oscillation_counters: bool = False  # param_moves ... and layer_oscillation
    lca_every: int = 1  # K > 1: only iterations 0, K, 2K, ... are allocated (lca_iters)
    full_loss_every: int = 0  # K > 0: full_loss_iters / full_loss / full_accuracy
    loss_change: bool = False  # loss_change (T,): ΔL of each step (resampled subsets)
    allocated_loss: str = ""  # e.g. "loss on 5,000 of 55,000 training examples"
    # named parameter groups finer than layers (a transformer's heads): [(name, [(s, e)])]
    groups: list[tuple[str, list[tuple[int, int]]]] | None = None
    # per-example LCA (lcaviz.bundle.examples): the tracked examples, or None (no such rows)
    examples: ExampleInfo | None = None
    # runs made with label noise: {"fraction", "seed", "flipped" (K,), "original" (K,)}
    label_noise: dict | None = None
    val_examples: ExampleInfo | None = None
    example_groups: np.ndarray | None = None

    def schedule(self) -> RowSchedule:
        return RowSchedule.parse(self.row_schedule or self.lca_stride)

    def columns(self) -> np.ndarray:
        """(K, 2) flat parameter ranges that get per-parameter rows."""
        P = int(self.param_offsets[-1])
        cols = [[0, P]] if self.row_columns is None else self.row_columns
        return np.asarray(cols, np.int64).reshape(-1, 2)


@dataclass
class IterationRecord:
    """Everything one iteration t (θ_t → θ_{t+1}) adds to the bundle."""

    loss_train: float  # L(θ_{t+1})
    acc_train: float
    loss_minibatch: float
    residual: float  # ΔL − ΣA
    splits: int
    lca_layer: np.ndarray  # (L,)
    help_count: np.ndarray  # (L,)
    hurt_count: np.ndarray  # (L,)
    seconds: float
    lca_row: np.ndarray | None = None  # (P_rows,) when a row's window closes here
    lca_class_layer: np.ndarray | None = None  # (C, L)
    theta: np.ndarray | None = None  # (P,) θ_{t+1}
    loss_val: float | None = None
    acc_val: float | None = None
    lca_val_row: np.ndarray | None = None  # (P_rows,)
    lca_val_layer: np.ndarray | None = None  # (L,)
    val_residual: float | None = None
    hit_max_halvings: bool | None = None  # adaptive: this step hit --max-halvings unaccepted
    lca_error: ErrorRecord | None = None  # at an error iteration (--lca-error-every)
    allocated: bool = True  # False: not allocated (--lca-every), LCA fields are NaN / 0
    full_loss: tuple[int, float, float] | None = None  # (t, L_full(θ_t), accuracy) if evaluated
    loss_change: float | None = None  # the allocated ΔL of this step (loss_change bundles)
    lca_group: np.ndarray | None = None  # (G,) LCA per named group (bundles with groups)
    lca_val_group: np.ndarray | None = None  # (G,)
    counterfactual: np.ndarray | None = None  # (4, 2) at --counterfactual-every iterations
    # bundles with examples (LayoutInfo.examples), at every allocated iteration:
    example: np.ndarray | None = None  # (N_e, L) float64: E[t, n, l] of this step
    example_loss_before: np.ndarray | None = None  # (N_e,) float64: ℓ_n(θ_t)
    example_loss_after: np.ndarray | None = None  # (N_e,) float64: ℓ_n(θ_{t+1})
    example_group: np.ndarray | None = None
    val_example: np.ndarray | None = None
    val_example_loss_before: np.ndarray | None = None
    val_example_loss_after: np.ndarray | None = None
    val_example_group: np.ndarray | None = None


@dataclass
class ErrorRecord:
    """One error iteration: the step's LCA against the same step on 4× the Simpson intervals
    (the reference A_ref). Rules are :data:`ERROR_RULES`; sums and counts are per layer."""

    iteration: int
    error: np.ndarray  # (P_rows,) float32: |A_stored − A_ref| per stored column
    intervals: int  # Simpson intervals of the reference
    ref_residual: float  # ΔL − Σ A_ref
    ref_layer: np.ndarray  # (L,) Σ A_ref
    ref_abs_layer: np.ndarray  # (L,) Σ |A_ref|
    nonzero: np.ndarray  # (L,) parameters with A_ref ≠ 0
    rule_sum: np.ndarray  # (4, L) Σ A_rule
    abs_error: np.ndarray  # (4, L) Σ |A_rule − A_ref|
    median_rel: np.ndarray  # (4, L) median of |A_rule − A_ref| / |A_ref| over A_ref ≠ 0
    flips: np.ndarray  # (4, L) parameters with A_ref ≠ 0 and sign(A_rule) ≠ sign(A_ref)


def _growing(f: h5py.Group, name: str, tail: tuple, dtype, description: str, chunk_rows=1024):
    """A dataset that grows along axis 0."""
    chunks = (chunk_rows, *tail) if tail else (chunk_rows,)
    return make_dataset(f, name, (0, *tail), dtype, description, maxshape=(None, *tail),
                        chunks=chunks)


def counter_dtype(iters_planned: int) -> np.dtype:
    """The smallest unsigned dtype that holds every per-parameter counter of a run of
    ``iters_planned`` iterations (they count at most T + 1 events: θ_0 … θ_T); int32 when the
    length is not known (0, e.g. the tracker). A 1,000-iteration run stores 2 B, not 4 B, per
    parameter and counter; the writer refuses a value beyond the dtype rather than wrap."""
    for dtype in (np.uint8, np.uint16):
        if 0 < iters_planned and iters_planned + 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int32)


def config_digest(config_json: str) -> str:
    """SHA-256 (hex) of the ``config`` attribute's text, recorded as ``config_sha256``."""
    return hashlib.sha256(config_json.encode()).hexdigest()


def create_datasets(f: h5py.File, layout: LayoutInfo) -> None:
    """Write the root attributes and create every dataset, empty (rows come later)."""
    schedule, cols = layout.schedule(), layout.columns()
    if layout.lca_storage not in STORAGES:
        raise ScheduleError(f"unknown --lca-storage {layout.lca_storage!r}; choose one of "
                            f"{', '.join(STORAGES)}")
    P = int(layout.param_offsets[-1])
    P_rows = int((cols[:, 1] - cols[:, 0]).sum())
    L, C = len(layout.layer_names), len(layout.class_names)
    a = f.attrs
    a["format"], a["format_version"] = FORMAT, FORMAT_VERSION
    a["config"] = json.dumps(layout.config, sort_keys=True, default=str)
    a["config_sha256"] = config_digest(a["config"])  # a resume refuses an edited config
    a["status"], a["status_reason"] = "running", ""
    a["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    a["software"] = json.dumps(layout.software or {}, sort_keys=True)
    a["device_name"], a["method"] = layout.device_name, layout.method
    a["lca_stride"], a["lca_rows_spec"] = schedule.stride, schedule.spec
    a["lca_storage"], a["n_classes"] = layout.lca_storage, C
    a["lca_compression"] = layout.compression
    a["iters_planned"] = int(layout.iters_planned)
    if layout.allocated_loss:
        a["allocated_loss"] = layout.allocated_loss
    if layout.lca_every > 1:
        a["lca_every"] = int(layout.lca_every)

    make_dataset(f, "progress", (2,), np.int64, "[T iterations complete, R lca rows complete]")
    _params(f.create_group("params"), layout)
    make_dataset(f.create_group("classes"), "names", (C,), STR, "class labels",
                 data=layout.class_names)
    make_dataset(f, "lca_columns", cols.shape, np.int64,
                 "[start, end) flat parameter ranges that have per-parameter rows", data=cols)
    _growing(f, "lca_rows", (2,), np.int64, "[first, end) iterations summed in each lca row")
    chunks = lca_chunks(P_rows, schedule.n_rows(layout.iters_planned, True))
    wide = (None, P_rows if P_rows else None)  # HDF5 chunks cannot exceed a fixed 0 width
    if layout.compression not in COMPRESSIONS:
        raise ScheduleError(f"unknown --lca-compression {layout.compression!r}; choose one of "
                            f"{', '.join(COMPRESSIONS)}")
    # gzip (any HDF5 reads it, no plugin) with byte shuffle: bfloat16 MNIST-FC rows shrink to
    # ~2/3; a row then costs ~4 ms to read instead of 0.1 ms (docs/benchmarks.md)
    packed = {"compression": "gzip", "compression_opts": 4, "shuffle": True} \
        if layout.compression == "gzip" else {}
    bf16 = layout.lca_storage == "bfloat16"
    row_dtype, row_enc = (np.uint16, BF16_ENCODING) if bf16 else (np.float32, None)
    make_dataset(f, "lca", (0, P_rows), row_dtype, "per-parameter LCA, exact sums over each "
                 "row's window", maxshape=wide, chunks=chunks, encoding=row_enc, **packed)
    make_dataset(f, "lca_cumsum", (0, P_rows), np.float32, "sum of lca rows 0..(k+1)*every-1",
                 maxshape=wide, chunks=chunks, **packed)
    # bfloat16 rows summed between cumsum rows add up their rounding (2⁻⁸ each): keep it short
    f["lca_cumsum"].attrs["every"] = int(layout.cumsum_every or (16 if bf16 else 64))
    if layout.examples is not None:
        # a cumulative frame adds at most every - 1 rows of N_e x L: keep that read short
        every = min(int(f["lca_cumsum"].attrs["every"]), ex.CUMSUM_EVERY)
        ex.create(f, layout.examples, L, bfloat16=bf16, every=every, packed=packed)
    if layout.label_noise is not None:
        ex.create_noise(f, layout.label_noise)
    for name, what in (("loss/train", "full training-set loss at theta_t"),
                       ("accuracy/train", "full training-set accuracy at theta_t"),
                       ("loss/minibatch", "minibatch loss of each step"),
                       ("lca_residual", "delta L minus sum of LCA"),
                       ("timing/seconds", "wall seconds per iteration")):
        _growing(f, name, (), np.float64, what)
    _growing(f, "splits", (), np.int32, "Simpson intervals per iteration")
    _growing(f, "lca_layer", (L,), np.float64, "LCA summed per layer")
    _growing(f, "help_count", (L,), np.int32, "parameters with LCA < 0 per layer")
    _growing(f, "hurt_count", (L,), np.int32, "parameters with LCA > 0 per layer")
    if layout.per_class:
        _growing(f, "lca_class_layer", (C, L), np.float64, "LCA per class and layer", 256)
    # O(P) counters compress well (small integers): 6.5 MB -> ~0.5 MB for LeNet's 809k
    counters = {**packed, "chunks": (min(P, 2**20),)} if packed and P else {}
    count = counter_dtype(layout.iters_planned)
    make_dataset(f, "param_help_iters", (P,), count, "iterations each parameter helped",
                 **counters)
    make_dataset(f, "param_nonzero_iters", (P,), count, "iterations with nonzero LCA",
                 **counters)
    if layout.groups:
        write_groups(f["params"], layout.groups, layout.param_offsets, layout.param_layer)
        G = len(layout.groups)
        _growing(f, "lca_group", (G,), np.float64, "LCA summed per named group")
        if layout.val_lca:
            _growing(f, "lca_val_group", (G,), np.float64, "validation LCA per named group")
    if layout.val_lca:
        _growing(f, "loss/val", (), np.float64, "full validation loss at theta_t")
        _growing(f, "accuracy/val", (), np.float64, "validation accuracy at theta_t")
        make_dataset(f, "lca_val", (0, P_rows), row_dtype, "LCA of the validation loss",
                     maxshape=wide, chunks=chunks, encoding=row_enc, **packed)
        _growing(f, "lca_val_layer", (L,), np.float64, "validation LCA per layer")
        _growing(f, "lca_val_residual", (), np.float64, "validation conservation error")
    if layout.save_trajectory:
        make_dataset(f, "trajectory", (0, P), np.float32, "theta_t", maxshape=(None, P),
                     chunks=lca_chunks(P, layout.iters_planned + 1))
    if layout.max_halvings_flags:
        _growing(f, "hit_max_halvings", (), np.int8, "1: the step used 2**max_halvings "
                 "intervals and still missed the tolerance")
    if layout.lca_error_every > 0:
        _error_datasets(f, layout, P_rows, L, wide)
    if layout.counterfactual_every > 0:
        counterfactual.create(f, layout.counterfactual_every)
    _approx_datasets(f, layout)
    if layout.oscillation_counters:
        for name, what in zip(OSC_COUNTERS, (
                "iterations with a nonzero move", "move direction changes",
                "nonzero full-gradient signs at theta_0..theta_T", "full-gradient sign changes"),
                strict=True):
            make_dataset(f, name, (P,), count, what, **counters)
        ds = make_dataset(f, "layer_oscillation", (L, len(OSC_LAYER_COLUMNS)), np.int64,
                          "per-layer sums of the oscillation counters")
        ds.attrs["columns"] = json.dumps(OSC_LAYER_COLUMNS)
        make_dataset(f, "oscillation_iters", (1,), np.int64,
                     "iterations the oscillation counters cover (T at their last write)")


def _approx_datasets(f: h5py.File, layout: LayoutInfo) -> None:
    """``lca_iters``, ``full_loss_iters`` / ``full_loss`` / ``full_accuracy``, ``loss_change``."""
    if layout.lca_every > 1:
        _growing(f, "lca_iters", (), np.int64, "iterations that were allocated", 256)
    if layout.full_loss_every > 0:
        for name, dtype, what in zip(FULL_LOSS_DATASETS, (np.int64, np.float64, np.float64), (
                "t of each full-loss evaluation (theta_t)", "full training-set loss at theta_t",
                "full training-set accuracy at theta_t"), strict=True):
            _growing(f, name, (), dtype, what, 256)
    if layout.loss_change:
        _growing(f, "loss_change", (), np.float64, "allocated loss change of each step")


def _error_datasets(f: h5py.File, layout: LayoutInfo, P_rows: int, L: int, wide) -> None:
    """``lca_error_iters``, ``lca_error`` and the ``lca_error_stats`` group (M entries each)."""
    K = int(layout.lca_error_every)
    M = -(-max(layout.iters_planned, 1) // K)
    _growing(f, "lca_error_iters", (), np.int64, "iterations with an error estimate", 256)
    make_dataset(f, "lca_error", (0, P_rows), np.float32, "|A_stored - A_ref| per parameter",
                 maxshape=wide, chunks=lca_chunks(P_rows, M))
    f["lca_error"].attrs["every"] = K
    g = f.create_group(ERROR_STATS)
    g.attrs["rules"] = json.dumps(ERROR_RULES)
    g.attrs["every"], g.attrs["factor"] = K, 4
    R = len(ERROR_RULES)
    _growing(g, "intervals", (), np.int32, "Simpson intervals of the reference", 256)
    _growing(g, "ref_residual", (), np.float64, "delta L minus sum of A_ref", 256)
    _growing(g, "ref_layer", (L,), np.float64, "sum of A_ref per layer", 64)
    _growing(g, "ref_abs_layer", (L,), np.float64, "sum of |A_ref| per layer", 64)
    _growing(g, "nonzero", (L,), np.int64, "parameters with A_ref != 0 per layer", 64)
    _growing(g, "rule_sum", (R, L), np.float64, "sum of A_rule per layer", 64)
    _growing(g, "abs_error", (R, L), np.float64, "sum of |A_rule - A_ref| per layer", 64)
    _growing(g, "median_rel", (R, L), np.float64,
             "median |A_rule - A_ref| / |A_ref| over A_ref != 0, per layer", 64)
    _growing(g, "flips", (R, L), np.int64, "sign(A_rule) != sign(A_ref), A_ref != 0", 64)


def _params(g: h5py.Group, layout: LayoutInfo) -> None:
    """The parameter table: names, shapes, flat offsets, layers, module types."""
    n, L = len(layout.param_names), len(layout.layer_names)
    shapes = np.full((n, 4), -1, np.int64)
    for k, s in enumerate(layout.param_shapes):
        shapes[k, : len(s)] = s
    make_dataset(g, "names", (n,), STR, "parameter tensor names", data=layout.param_names)
    make_dataset(g, "shapes", (n, 4), np.int64, "tensor shapes, -1 padded", data=shapes)
    make_dataset(g, "offsets", (n + 1,), np.int64, "flat offsets", data=layout.param_offsets)
    make_dataset(g, "layer", (n,), np.int32, "layer index per tensor", data=layout.param_layer)
    make_dataset(g, "module_type", (n,), STR, "owning module class",
                 data=layout.param_module_type)
    make_dataset(g, "layer_names", (L,), STR, "layer names", data=layout.layer_names)
    sizes = np.zeros(L, np.int64)
    np.add.at(sizes, layout.param_layer, np.diff(layout.param_offsets))
    make_dataset(g, "layer_sizes", (L,), np.int64, "parameters per layer", data=sizes)

