"""The runs table: :func:`scan_runs` describes every bundle under a directory as a
:class:`RunInfo` row, surviving unreadable files."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from lcaviz.bundle.errors import (
    BundleError,
    CorruptBundleError,
    RefusedBundleError,
    TruncatedBundleError,
)
from lcaviz.bundle.reader import RunBundle


@dataclass
class RunInfo:
    """One row of the runs table (``ok`` is False for an unreadable file)."""

    path: str  # relative to the scanned directory, POSIX separators
    ok: bool
    error: str = ""
    net: str = ""
    dataset: str = ""
    optimizer: str = ""
    method: str = ""
    iterations: int = 0
    iters_planned: int = 0
    final_loss: float = math.nan
    status: str = ""
    created: str = ""
    n_params: int = 0
    mtime: float = 0.0
    size: int = 0
    lr: float | None = None
    momentum: float | None = None  # SGD momentum, or Adam's beta1
    batch_size: int | None = None
    seed: int | None = None
    frames: int = 0  # stored per-parameter rows
    config: dict = field(default_factory=dict)  # the run's config (runs-table queries)
    problem: str = ""  # why not ok: "refused", "truncated", "damaged" or "unreadable"


def problem_of(e: BaseException) -> str:
    """The runs table's word for why a bundle cannot be shown."""
    for cls, word in ((RefusedBundleError, "refused"), (TruncatedBundleError, "truncated"),
                      (CorruptBundleError, "damaged")):
        if isinstance(e, cls):
            return word
    return "unreadable"


def scan_runs(runs_dir: str | Path, pattern: str = "*.h5",
              borrow: Callable[[Path], AbstractContextManager[RunBundle]] | None = None
              ) -> list[RunInfo]:
    """Describe every bundle under ``runs_dir`` (recursively), newest first.

    Never raises for a bad file: it gets ``ok=False``, the error message (naming the file by
    its path relative to ``runs_dir``) and ``problem``. A symlink whose target lies outside
    ``runs_dir`` is never opened (``problem="refused"``). Each file is open only while its row
    is read, through ``borrow(path)`` if given (the dashboard lends its own handles, so a
    process never holds two handles on one live file), else ``RunBundle.open``.
    """
    borrow = borrow or RunBundle.open
    root = Path(runs_dir)
    real_root = root.resolve() if root.is_dir() else root
    infos = []
    for p in sorted(root.rglob(pattern)) if root.is_dir() else []:
        try:
            st = p.stat()
            inside = p.resolve(strict=True).is_relative_to(real_root)
        except (OSError, RuntimeError):
            continue
        rel = p.relative_to(root).as_posix()
        info = RunInfo(path=rel, ok=False, mtime=st.st_mtime, size=st.st_size)
        infos.append(info)
        if not inside:
            info.error = f"{rel}: refused: a symlink to a file outside the runs directory"
            info.problem, info.size = "refused", 0
            continue
        try:
            with borrow(p) as b:
                cfg = b.config
                loss = b.final_loss()
                info.net, info.dataset = str(cfg.get("net", "")), str(cfg.get("dataset", ""))
                info.optimizer, info.method = str(cfg.get("optimizer", "")), b.method
                info.iterations, info.iters_planned = b.n_iters, b.iters_planned
                info.final_loss = loss
                info.status, info.created, info.n_params = b.status, b.created, b.n_params
                adam = cfg.get("optimizer") == "adam"
                info.lr, info.batch_size, info.seed = (_num(cfg.get(k)) for k in
                                                       ("lr", "batch_size", "seed"))
                info.momentum = _num((cfg.get("betas") or [None])[0] if adam
                                     else cfg.get("momentum"))
                info.frames = b.n_rows
                info.config = cfg
                info.ok = True
        except BundleError as e:
            info.error, info.problem = str(e).replace(str(p), rel), problem_of(e)
        except Exception as e:  # noqa: BLE001 - the runs page must survive anything
            info.error = f"{rel}: unexpected {type(e).__name__}: {e}".replace(str(p), rel)
            info.problem = "unreadable"
    infos.sort(key=lambda i: i.mtime, reverse=True)
    return infos


def _num(v):
    """A config number as int/float, or None (configs written by others may hold anything)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and not isinstance(v, float) else v
