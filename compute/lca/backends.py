"""Float32 precision of GPU matmuls and convolutions: full IEEE fp32 unless TF32 is asked for.

PyTorch lets cuDNN convolutions use TF32 by default (torch 2.13:
``torch.backends.cudnn.conv.fp32_precision == "tf32"``; older torch:
``torch.backends.cudnn.allow_tf32 is True``). TF32 keeps 10 mantissa bits: on an H100 it flips
1.25 % of ResNet-20's per-parameter LCA signs against float64 (fp32: 0.03 %) while the
conservation residual stays at 8e-8, so the residual cannot reveal it. LCA runs on CUDA
therefore set full fp32 (``"ieee"``) for cuBLAS matmuls and cuDNN convolutions and RNNs unless
TF32 is explicitly allowed, and record the flags read back.

The flags are process-wide and need no GPU to be set or read, so all of this is testable on a
CPU machine. torch ≥ 2.9 has the ``fp32_precision`` API; it also keeps the legacy flags
(``allow_tf32``, ``float32_matmul_precision``) and raises if a legacy getter finds them
inconsistent with the new ones, so we set the legacy ones too (silencing the deprecation
warning that setting them emits), which keeps every getter, ours and third-party, working.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

PRECISION_API = "fp32_precision"  # torch ≥ 2.9
LEGACY_API = "allow_tf32"
_TF32_DEPRECATION = r".*new API settings to control TF32.*"


def has_fp32_precision_api() -> bool:
    """True if this torch has ``torch.backends.{cuda.matmul,cudnn.conv}.fp32_precision``."""
    try:
        torch.backends.cuda.matmul.fp32_precision  # noqa: B018 - probing for the attribute
        torch.backends.cudnn.conv.fp32_precision  # noqa: B018
        torch.backends.cudnn.rnn.fp32_precision  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


@contextmanager
def _quiet_legacy():
    """Silence only the deprecation warning that the legacy TF32 flags emit (torch 2.9+)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TF32_DEPRECATION, category=UserWarning)
        yield


def set_matmul_precision(device: str | torch.device, allow_tf32: bool = False) -> dict:
    """Set the float32 precision of matmuls and convolutions for a run on ``device``.

    For a CUDA device: full IEEE fp32 for cuBLAS matmuls and cuDNN convolutions (and RNNs),
    or TF32 for all three when ``allow_tf32`` is True. For any other device nothing is changed
    (the flags only affect CUDA kernels) and the current flags are returned. Setting them
    needs no GPU.

    Args:
        device: the run's device, e.g. ``"cuda"``, ``"cuda:1"`` or ``"cpu"``.
        allow_tf32: allow TF32 (faster on Ampere and later, ~1e-3 relative per product).

    Returns:
        The effective flags read back, JSON-serialisable (see :func:`precision_flags`), plus
        ``"allow_tf32"`` (what was asked) and ``"set"`` (whether anything was set).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        if has_fp32_precision_api():
            _set_fp32_precision(allow_tf32)
        else:
            _set_legacy(allow_tf32)
    return {**precision_flags(dev), "allow_tf32": bool(allow_tf32), "set": dev.type == "cuda"}


def _set_legacy(allow_tf32: bool) -> None:
    with _quiet_legacy():
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32


def _set_fp32_precision(allow_tf32: bool) -> None:
    b = torch.backends
    precision = "tf32" if allow_tf32 else "ieee"
    mkldnn_matmul = b.mkldnn.matmul.fp32_precision
    with _quiet_legacy():  # legacy state consistent with the new one: no getter will raise
        b.cudnn.allow_tf32 = allow_tf32
    # sets the legacy matmul state and cuda.matmul together (and mkldnn.matmul, restored below:
    # CPU matmuls are not ours to change)
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    b.mkldnn.matmul.fp32_precision = mkldnn_matmul
    b.cudnn.fp32_precision = precision  # the "cuda" backend as a whole
    b.cudnn.conv.fp32_precision = precision
    b.cudnn.rnn.fp32_precision = precision
    b.cuda.matmul.fp32_precision = precision


def precision_flags(device: str | torch.device = "cuda") -> dict:
    """The float32 precision flags now in effect, as a JSON-serialisable dict.

    Keys: ``device_type``; ``api`` (``"fp32_precision"`` or ``"allow_tf32"``); the effective
    ``matmul``, ``conv`` and ``rnn`` precision of CUDA kernels (``"ieee"`` or ``"tf32"``,
    resolved through the parents of ``"none"`` as torch does); ``tf32_matmul`` and
    ``tf32_conv`` (bool; they only matter for CUDA kernels); the raw flags as torch reports
    them (``"torch.backends...."`` keys, and ``float32_matmul_precision``; None where a legacy
    getter refuses to answer because the two APIs were mixed); and ``torch`` (its version).
    """
    b = torch.backends
    out: dict = {"device_type": torch.device(device).type, "torch": torch.__version__}
    with _quiet_legacy():
        legacy = {"torch.backends.cuda.matmul.allow_tf32": _read(lambda: b.cuda.matmul.allow_tf32),
                  "torch.backends.cudnn.allow_tf32": _read(lambda: b.cudnn.allow_tf32),
                  "float32_matmul_precision": _read(torch.get_float32_matmul_precision)}
    if has_fp32_precision_api():
        raw = {"torch.backends.fp32_precision": b.fp32_precision,
               "torch.backends.cudnn.fp32_precision": b.cudnn.fp32_precision,
               "torch.backends.cuda.matmul.fp32_precision": b.cuda.matmul.fp32_precision,
               "torch.backends.cudnn.conv.fp32_precision": b.cudnn.conv.fp32_precision,
               "torch.backends.cudnn.rnn.fp32_precision": b.cudnn.rnn.fp32_precision}
        parents = (raw["torch.backends.cudnn.fp32_precision"],
                   raw["torch.backends.fp32_precision"])
        eff = {op: _resolve(raw[f"torch.backends.{key}.fp32_precision"], parents)
               for op, key in (("matmul", "cuda.matmul"), ("conv", "cudnn.conv"),
                               ("rnn", "cudnn.rnn"))}
        out.update(api=PRECISION_API, **eff, **raw)
    else:
        conv = "tf32" if legacy["torch.backends.cudnn.allow_tf32"] else "ieee"
        out.update(api=LEGACY_API, conv=conv, rnn=conv,
                   matmul="tf32" if legacy["torch.backends.cuda.matmul.allow_tf32"] else "ieee")
    out.update(legacy, tf32_matmul=out["matmul"] == "tf32", tf32_conv=out["conv"] == "tf32")
    return out


def _resolve(value: str, parents: tuple[str, ...]) -> str:
    """torch's rule: ``"none"`` defers to the backend's, then the generic setting; a chain
    of ``"none"`` (or ``"bf16"``, which CUDA ignores) means full precision."""
    for v in (value, *parents):
        if v != "none":
            return "ieee" if v == "bf16" else v
    return "ieee"


def _read(getter):
    """A legacy flag, or None where torch refuses to read it (the APIs were mixed)."""
    try:
        return getter()
    except RuntimeError:
        return None
