"""The runs table: :func:`scan_runs` describes every bundle under a directory as a
:class:`RunInfo` row, surviving unreadable files."""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def scan_runs(runs_dir: str | Path, pattern: str = "*.h5") -> list[RunInfo]:
    """Describe every bundle under ``runs_dir`` (recursively), newest first.

    Never raises for a bad file: it gets ``ok=False`` and the error message. Each file is open
    only while its row is read.
    """
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
            with RunBundle.open(p) as b:
                cfg = b.config
                loss = b._series("loss/train", b.n_iters + 1)
                info.net, info.dataset = str(cfg.get("net", "")), str(cfg.get("dataset", ""))
                info.optimizer, info.method = str(cfg.get("optimizer", "")), b.method
                info.iterations, info.iters_planned = b.n_iters, b.iters_planned
                info.final_loss = float(loss[-1]) if len(loss) else math.nan
                info.status, info.created, info.n_params = b.status, b.created, b.n_params
                info.ok = True
        except BundleError as e:
            info.error = str(e)
        except Exception as e:  # noqa: BLE001 - the runs page must survive anything
            info.error = f"{p}: unexpected {type(e).__name__}: {e}"
        infos.append(info)
    infos.sort(key=lambda i: i.mtime, reverse=True)
    return infos
