"""``chunk_size="auto"``: the largest evaluation chunk whose forward+backward fits a budget.

For a model without BatchNorm the chunk size does not change the loss (only the order of float
sums), so nobody should have to tune it: the objective measures, on its first evaluation, what
a forward+backward costs on two small probe chunks, fits ``bytes = fixed + per_example · n`` and
takes the largest chunk that stays within the budget — :data:`GPU_BUDGET_FRACTION` of the
device's free memory on CUDA, :data:`CPU_BUDGET_BYTES` (1 GiB) on a CPU. For BatchNorm models
the chunk is a whole number of normalisation groups (``bn_group``), evaluated together by ghost
BatchNorm.

What is measured: on CUDA the peak of ``torch.cuda.max_memory_allocated`` during the probe
pass; on a CPU (where torch keeps no allocator statistics) the bytes of the tensors autograd
saves for the backward, times :data:`CPU_PEAK_FACTOR` for the gradients that flow back beside
them (docs/benchmarks.md compares this estimate with the process's measured peak RSS).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from compute.lca.distributed import world

# 1 GiB of activations on a CPU: bigger chunks buy nothing there and cost conv nets cache misses
# (ResNet-20, 1,000 images, 1 thread: an rk4 iteration at chunk 500 took 1.05x its CPU time at
# chunk 250; two plain gradients at chunk 1,000 1.5x those at 250; docs/benchmarks.md)
CPU_BUDGET_BYTES = 2**30
GPU_BUDGET_FRACTION = 0.25  # of the device's free memory at the first evaluation
# saved activations + the activation gradients of the backward: the peak RSS growth of a
# ResNet-20 evaluation was 1.11-1.22x twice the saved bytes (docs/benchmarks.md)
CPU_PEAK_FACTOR = 2.5
PROBE_EXAMPLES = 32  # the small probe chunk (the second has twice as many)
DEFAULT_BN_GROUP = 1000  # the BatchNorm group every run before --bn-group allocated


class ChunkingError(ValueError):
    """The requested chunking would change the loss of this model."""


def memory_budget(device: torch.device) -> tuple[int, str]:
    """(bytes, rule) of the activation budget of one forward+backward on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * GPU_BUDGET_FRACTION), (
            f"{GPU_BUDGET_FRACTION:.0%} of the free device memory ({free} bytes)")
    return CPU_BUDGET_BYTES, f"{CPU_BUDGET_BYTES / 2**30:g} GiB (CPU)"


def pass_bytes(run_pass: Callable[[int], None], m: int, device: torch.device,
               exclude: set[int]) -> int:
    """Memory of ``run_pass(m)`` (a forward+backward on ``m`` examples), in bytes.

    Args:
        run_pass: runs the pass; everything it allocates is freed when it returns.
        m: examples.
        device: where it runs.
        exclude: storage addresses that exist anyway (parameters, the data): not counted.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run_pass(m)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_pass(m)
    return int(CPU_PEAK_FACTOR * sum(saved.values()))


def auto_chunk_size(run_pass: Callable[[int], None], n: int, device: torch.device, *,
                    exclude: set[int], budget: int | None = None, granule: int = 1) -> dict:
    """Measure the pass on two probe sizes and return the chunking that fits the budget.

    Args:
        run_pass: a forward+backward on the first ``m`` examples (see :func:`pass_bytes`).
        n: examples in the data set (the chunk never exceeds it).
        device: where the passes run.
        exclude: storage addresses not to count (see :func:`pass_bytes`).
        budget: bytes; None: :func:`memory_budget` of the device.
        granule: the chunk is a multiple of this (the BatchNorm group; 1 otherwise).

    Returns:
        JSON-serialisable: ``chunk_size``, ``budget_bytes``, ``budget_rule``,
        ``bytes_per_example``, ``fixed_bytes``, ``estimated_bytes`` (of the chosen chunk; the
        objective restates it for its largest actual chunk, ``largest_chunk``),
        ``probe_examples``, ``measured_by`` and ``over_budget`` (True when even one granule
        does not fit; it is used anyway, the loss needs it).
    """
    rule = "given"
    if budget is None:
        budget, rule = memory_budget(device)
    m1 = max(1, min(PROBE_EXAMPLES, n // 2))
    m2 = min(n, 2 * m1)
    b1 = pass_bytes(run_pass, m1, device, exclude)
    b2 = pass_bytes(run_pass, m2, device, exclude) if m2 > m1 else b1
    per_example = (b2 - b1) / (m2 - m1) if m2 > m1 else b1 / m1
    if per_example <= 0:  # allocator rounding at tiny sizes: fall back to the larger probe
        per_example = b2 / m2
    fixed = max(0.0, b1 - per_example * m1)
    fits = int((budget - fixed) // per_example) if per_example > 0 else n
    fits = _agree_min(fits, device)  # every rank must cut the same partition
    units = max(1, n // granule)  # whole granules (a partial last group is its own chunk)
    per_chunk = max(1, min(units, fits // granule))
    per_chunk = -(-units // -(-units // per_chunk))  # the same chunk count, evenly filled
    chunk = per_chunk * granule
    return {"chunk_size": int(chunk), "budget_bytes": int(budget), "budget_rule": rule,
            "bytes_per_example": float(per_example), "fixed_bytes": float(fixed),
            "estimated_bytes": float(fixed + per_example * min(chunk, n)),
            "probe_examples": [m1, m2], "over_budget": fits < granule,
            "measured_by": ("torch.cuda.max_memory_allocated" if device.type == "cuda" else
                            f"autograd saved tensors x {CPU_PEAK_FACTOR:g}")}


def _agree_min(value: int, device: torch.device) -> int:
    """The smallest value over all ranks (the value itself when not distributed)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t)


def check_chunk_size(chunk_size: int | str) -> None:
    """Raise ValueError unless ``chunk_size`` is a positive int or ``"auto"``."""
    if chunk_size == "auto":
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer or 'auto', got {chunk_size!r}")


def resolve_bn_group(batchnorm: bool, chunk_size: int | str,
                     bn_group: int | None) -> tuple[int | None, int | str, bool]:
    """(normalisation group, evaluation chunk request, deprecated) of a model that has
    BatchNorm layers (``batchnorm``) or not.

    Models without BatchNorm have no group (``bn_group`` is ignored). With BatchNorm the group
    is ``bn_group``; without it an integer ``chunk_size`` keeps its old meaning, the group
    (deprecated: the chunk then becomes ``"auto"``), and otherwise it is
    :data:`DEFAULT_BN_GROUP`. An integer evaluation chunk must hold whole groups.
    """
    if not batchnorm:
        return None, chunk_size, False
    if bn_group is None:
        if chunk_size == "auto":
            return DEFAULT_BN_GROUP, "auto", False
        return chunk_size, "auto", True
    if isinstance(bn_group, bool) or not isinstance(bn_group, int) or bn_group <= 0:
        raise ValueError(f"bn_group must be a positive integer, got {bn_group!r}")
    if chunk_size != "auto" and chunk_size % bn_group:
        raise ChunkingError(f"chunk_size {chunk_size} is not a whole number of BatchNorm groups "
                            f"of {bn_group} (bn_group); use a multiple of it or 'auto'")
    return bn_group, chunk_size, False
