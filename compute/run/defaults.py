"""The speed defaults of ``lca-run`` that need the model or the device, each one recorded.

* Chunks: ``--chunk-size auto`` and ``--bn-group`` resolved against the model
  (:func:`run_chunks`; the objective measures the auto chunk on its first evaluation).
* Layout: ``--memory-format auto`` is channels_last for conv nets on CUDA when the automatic
  precision check passes with it, else contiguous (NCHW), and always contiguous on a CPU, whose
  fp32 NHWC BatchNorm fails the precision bar (:func:`choose_memory_format`).
* cuDNN benchmark mode on CUDA (:func:`cuda_backend_defaults`): it picks the fastest algorithm
  per input shape once and keeps it, so two evaluations at one θ still use the same kernels.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn

from compute.lca.chunk_size import resolve_bn_group
from compute.lca.objective import has_batchnorm
from compute.run.config import ConfigError, RunConfig

CONV_NETS = ("lenet", "allcnn", "resnet20")  # image nets whose activations have a layout


def run_chunks(cfg: RunConfig, model: nn.Module) -> dict:
    """The objective's ``chunk_size`` and ``bn_group`` for this run's model.

    Raises:
        ConfigError: ``--bn-group`` for a net without BatchNorm.
    """
    batchnorm = has_batchnorm(model)
    if cfg.bn_group is not None and not batchnorm:
        raise ConfigError(f"--bn-group only applies to nets with BatchNorm; {cfg.net} has none "
                          "(its chunk size never changes the loss: drop --bn-group)")
    try:
        group, chunk, deprecated = resolve_bn_group(batchnorm, cfg.chunk_size, cfg.bn_group)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if deprecated:
        warnings.warn(f"--chunk-size {cfg.chunk_size} on a BatchNorm net sets the normalisation "
                      f"groups, as before; say --bn-group {cfg.chunk_size} instead (--chunk-size "
                      "is now the evaluation chunk, auto by default)", FutureWarning,
                      stacklevel=2)
    return {"chunk_size": chunk, "bn_group": group, "deprecated": deprecated}


def cuda_backend_defaults(device: torch.device) -> dict:
    """Turn on cuDNN benchmark mode for a CUDA run; what is in effect, for the bundle."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark and device.type == "cuda")}


def choose_memory_format(cfg: RunConfig, check_fn) -> tuple[RunConfig, dict | None, dict]:
    """Resolve ``--memory-format auto`` and run the automatic precision check of the choice.

    Args:
        cfg: the run settings.
        check_fn: the automatic precision check, ``cfg -> dict | None``
            (:func:`compute.run.precision.auto_precision_check`; None where nothing is checked).

    Returns:
        (the settings with a concrete memory format, the precision check of the run's layout
        or None, the record of the choice: ``memory_format_requested``, ``memory_format``,
        ``reason`` and, where channels_last was tried, ``channels_last_check`` with its
        ``passed``, ``max_rel_error`` and ``min_sign_agreement``).
    """
    if cfg.memory_format != "auto":
        return cfg, check_fn(cfg), {"memory_format_requested": cfg.memory_format,
                                    "memory_format": cfg.memory_format, "reason": "asked for"}
    nchw = dataclasses.replace(cfg, memory_format="contiguous")
    record = {"memory_format_requested": "auto", "memory_format": "contiguous"}
    if not cfg.device.startswith("cuda"):
        return nchw, check_fn(nchw), {**record, "reason": "CPU: fp32 NHWC BatchNorm is "
                                      "~100x less precise than NCHW"}
    if cfg.net not in CONV_NETS:
        return nchw, check_fn(nchw), {**record, "reason": f"{cfg.net} is not a conv net"}
    if cfg.precision == "float64":
        return nchw, None, {**record, "reason": "float64: no automatic precision check to pass"}
    nhwc = dataclasses.replace(cfg, memory_format="channels_last")
    check = check_fn(nhwc)
    summary = {k: check[k] for k in ("passed", "max_rel_error", "min_sign_agreement")}
    if check["passed"]:
        return nhwc, check, {"memory_format_requested": "auto", "memory_format": "channels_last",
                             "reason": "CUDA conv net, precision check passed with it",
                             "channels_last_check": summary}
    return nchw, check_fn(nchw), {**record, "reason": "channels_last failed the precision check",
                                  "channels_last_check": summary}
