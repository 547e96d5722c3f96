"""Everything that makes a run safe to kill: the per-run state a checkpoint carries, writing
checkpoints atomically, and the checks before a bundle path is (re)written or resumed."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import h5py
import torch

from compute.engine.state import RunState  # noqa: F401 - re-exported
from compute.lca.distributed import is_main
from compute.run.config import ConfigError, RunConfig
from lcaviz.bundle.layout import config_digest
from lcaviz.bundle.space import ensure_room, free_bytes


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(path: Path, T: int, run, state: RunState, writer) -> None:
    """Atomically replace the checkpoint (a kill mid-write leaves the previous one).

    Raises:
        OSError: the disk (or the file-size limit) has no room for it, checked before writing
            (:class:`~lcaviz.bundle.space.NoRoom`), or the write failed; either way no
            ``.ckpt.tmp`` is left and the previous checkpoint is intact.
    """
    if not is_main():
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    payload = {"T": T, "pid": os.getpid(), "model": run.model.state_dict(),
               "optimizer": run.optimizer.state_dict(), "state": state.state_dict(),
               "running_total": torch.from_numpy(writer.running_total.copy())}
    need = _tensor_bytes(payload) + (64 << 10)  # + zip entries and pickled structure
    try:
        ensure_room(tmp, need, "the checkpoint")
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a half-written checkpoint only fills the disk
        if isinstance(e, OSError) or not isinstance(e, Exception):
            raise
        # torch.save reports a failed write as RuntimeError ("iostream error"): say why
        free = free_bytes(path.parent)
        code = errno.ENOSPC if free < need else errno.EIO
        raise OSError(code, f"could not write the checkpoint {path.name} ({e}; "
                      f"{free / 1e6:,.1f} MB free, it needs ~{need / 1e6:,.1f} MB)") from e


def _tensor_bytes(obj) -> int:
    """Bytes of every tensor in a (nested) checkpoint payload."""
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def process_alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_out_path(out: Path, overwrite: bool, *, api: bool = False) -> None:
    """Refuse to replace an existing ``out`` unless ``overwrite``; never one being written.

    ``api``: the caller is Python (``LCATracker``, ``compute_lca``): the message names
    ``out=`` and ``overwrite=True`` instead of ``--out`` and ``--overwrite``, and offers no
    ``lca-run --resume``.

    Raises:
        ConfigError: naming what the file holds and the flag (``--resume``/``--overwrite``).
    """
    if not out.exists():
        return
    from lcaviz.bundle import BundleError, RunBundle

    name, flag = ("out=", "overwrite=True") if api else ("--out ", "--overwrite")
    try:
        with RunBundle.open(out) as b:
            status, T, planned = b.status, b.n_iters, b.iters_planned
            pid = int(b._attrs.get("writer_pid", 0))
    except BundleError as e:
        if overwrite:
            return
        raise ConfigError(f"{name}{out} exists and is not a readable LCA bundle ({e}); "
                          f"choose another {name.strip()}, or pass {flag} to replace it"
                          ) from None
    if status == "running" and process_alive(pid):
        raise ConfigError(f"{name}{out} is being written by process {pid}, which is still "
                          f"running; choose another {name.strip()}")
    if overwrite:
        return
    if status == "complete":
        raise ConfigError(f"{name}{out} already holds a complete run ({T:,} iterations); "
                          f"choose another {name.strip()}, or pass {flag} to replace it")
    resume = "" if api else f"continue it with: lca-run --resume {out}; or "
    raise ConfigError(f"{name}{out} holds an unfinished run (status {status}, {T:,} of "
                      f"{planned:,} iterations); {resume}pass {flag} to replace it")


def restart_config(out: Path) -> RunConfig:
    """The recorded config of a bundle killed before its first checkpoint (to start again).

    Raises:
        ConfigError: no bundle, a complete one, one still being written, or no readable
            config (then nothing records what to run).
    """
    if not out.exists():
        raise ConfigError(f"--resume: no bundle at {out}")
    try:
        with h5py.File(out, "r", swmr=True, locking=False) as f:
            status = str(f.attrs.get("status", ""))
            pid = int(f.attrs.get("writer_pid", 0))
            cfg = stored_config(f, out)
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"--resume: {out} has no checkpoint and no readable config ({e}); "
                          "start the run again with the same flags and --overwrite") from None
    if status == "complete":
        raise ConfigError(f"--resume: {out} is complete; there is nothing to resume")
    if process_alive(pid):
        raise ConfigError(f"--resume: process {pid} that writes {out} is still running; "
                          "stop it first (or wait for it to finish)")
    return cfg


def stored_config(f: h5py.File, out: Path) -> RunConfig:
    """The run config recorded in an open bundle, checked against its ``config_sha256``.

    Raises:
        ConfigError: the config text was edited after the run started (resuming would mix two
            settings in one bundle). Bundles older than the digest are not checked.
    """
    text = f.attrs["config"]
    text = text.decode() if isinstance(text, bytes) else str(text)
    recorded = f.attrs.get("config_sha256")
    if recorded is not None and config_digest(text) != str(recorded):
        raise ConfigError(f"--resume: the config stored in {out} was changed after the run "
                          "started (it no longer matches its config_sha256); a resumed run "
                          "would mix two settings in one bundle: restore the config, or "
                          "start a new run with the new settings")
    return RunConfig.from_dict(json.loads(text))
