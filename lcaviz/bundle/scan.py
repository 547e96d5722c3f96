"""The runs table: :func:`scan_runs` describes every bundle under a directory as a
:class:`RunInfo` row, surviving unreadable files."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from lcaviz.bundle.errors import BundleError
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


def scan_runs(runs_dir: str | Path, pattern: str = "*.h5",
              borrow: Callable[[Path], AbstractContextManager[RunBundle]] | None = None
              ) -> list[RunInfo]:
    """Describe every bundle under ``runs_dir`` (recursively), newest first.

    Never raises for a bad file: it gets ``ok=False`` and the error message. Each file is open
    only while its row is read, through ``borrow(path)`` if given (the dashboard lends its
    own handles, so a process never holds two handles on one live file), else
    ``RunBundle.open``.
    """
    borrow = borrow or RunBundle.open
    root = Path(runs_dir)
    infos = []
    for p in sorted(root.rglob(pattern)) if root.is_dir() else []:
        try:
            st = p.stat()
        except OSError:
            continue
        info = RunInfo(path=p.relative_to(root).as_posix(), ok=False, mtime=st.st_mtime,
                       size=st.st_size)
        try:
            with borrow(p) as b:
                cfg = b.config
                loss = b._series("loss/train", b.n_iters + 1)
                info.net, info.dataset = str(cfg.get("net", "")), str(cfg.get("dataset", ""))
                info.optimizer, info.method = str(cfg.get("optimizer", "")), b.method
                info.iterations, info.iters_planned = b.n_iters, b.iters_planned
                info.final_loss = float(loss[-1]) if len(loss) else math.nan
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
            info.error = str(e)
        except Exception as e:  # noqa: BLE001 - the runs page must survive anything
            info.error = f"{p}: unexpected {type(e).__name__}: {e}"
        infos.append(info)
    infos.sort(key=lambda i: i.mtime, reverse=True)
    return infos


def _num(v):
    """A config number as int/float, or None (configs written by others may hold anything)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and not isinstance(v, float) else v
