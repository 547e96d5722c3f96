"""Resume an :class:`~compute.integrations.tracker.LCATracker` run in the user's own training loop.

``lca.state_dict()`` is ``lca-run``'s checkpoint without the model and optimizer, which the
user's own ``torch.save`` holds next to it: the same keys (``T``, ``pid``, ``state`` = the
:class:`~compute.run.checkpoint.RunState` accumulators, ``running_total`` of the bundle's
``lca_cumsum``) plus what only the tracker keeps (``tracker``: its options, the parameter names,
a digest of θ_T, the warnings given so far and the residual watch). A restart loads it with
``lca.load_state_dict(...)``; the bundle is continued by the writer's own truncation
(:meth:`~lcaviz.bundle.writer.BundleWriter.reopen`, as ``lca-run --resume``): what was written
after the checkpoint is dropped and allocated again, so the finished bundle equals an
uninterrupted run bit for bit.

A checkpoint and a bundle that do not belong together are refused before anything is touched
(:func:`check_bundle`: a bundle with fewer iterations than the checkpoint, naming both; other
parameters or options), and so is a model that is not θ_T (:func:`check_model`: the state keeps
θ_T's SHA-256, 0.16 s for 10 M float32 parameters on one CPU core). A complete bundle is never
resumed or replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

from compute.integrations.tracker_checks import LCAWarning
from compute.lca.distributed import NullWriter, is_main, raise_together, same_on_all_ranks
from compute.run.checkpoint import check_out_path, process_alive
from compute.run.config import ConfigError
from lcaviz.bundle.writer import BundleWriter

STATE_VERSION = 1
_KEYS = ("T", "pid", "state", "running_total", "tracker")


def theta_digest(theta: torch.Tensor) -> str:
    """SHA-256 of θ's bytes: tells whether the model loaded on a restart is θ_T."""
    return hashlib.sha256(theta.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def tracker_state(tracker) -> dict:
    """What ``lca.state_dict()`` returns (the writer is flushed by the caller first, so the
    bundle holds every iteration the state counts)."""
    total = tracker.writer.running_total if is_main() else None
    return {
        "T": tracker.t, "pid": os.getpid(), "state": tracker.state.state_dict(),
        "running_total": None if total is None else torch.from_numpy(np.array(total)),
        "tracker": {
            "version": STATE_VERSION, "options": dict(tracker.options),
            "parameters": list(tracker.run.table.names), "n_params": tracker.run.table.n_params,
            "theta_sha256": theta_digest(tracker.session.theta), "loss0": tracker.loss0,
            "notes": list(tracker.notes), "warned": dict(tracker._warned),
            "residual_warned_at": tracker.residual.warned_at,
            "residual_loss": tracker.residual.loss, "out": str(tracker.out),
        },
    }


def checked_state(state) -> dict:
    """``state`` if it is an ``LCATracker.state_dict()``.

    Raises:
        ValueError: anything else (e.g. an ``lca-run`` checkpoint, a model's state dict).
    """
    if not isinstance(state, dict) or any(k not in state for k in _KEYS) or \
            not isinstance(state["tracker"], dict):
        keys = ", ".join(map(str, list(state)[:6])) if isinstance(state, dict) else \
            type(state).__name__
        raise ValueError(f"LCATracker.load_state_dict: not a state saved by "
                         f"LCATracker.state_dict() (it holds {keys}); save lca.state_dict() "
                         "in your checkpoint next to the model and optimizer")
    version = state["tracker"].get("version")
    if version != STATE_VERSION:
        raise ValueError(f"LCATracker.load_state_dict: state version {version}, this "
                         f"lca-explorer reads version {STATE_VERSION}")
    return state


def check_out(tracker) -> ConfigError | None:
    """Rank 0: why ``tracker.out`` cannot be written (or continued) now, else None."""
    try:
        if tracker._loaded is not None:
            check_bundle(tracker.out, tracker._loaded, tracker.options)
        elif tracker.resume:
            if (note := restart_note(tracker.out)) is not None:
                warnings.warn(note, LCAWarning, stacklevel=5)
        else:
            check_out_path(tracker.out, tracker.overwrite, api=True)
    except ConfigError as e:
        return e
    return None


def check_bundle(out: Path, state: dict, options: dict) -> None:
    """Rank 0, before anything is touched: the bundle ``out`` can be continued from ``state``.

    Raises:
        ConfigError: no bundle, a complete one, one still being written, one with fewer
            iterations than the checkpoint (both numbers), or one of other parameters or
            options.
    """
    T = int(state["T"])
    where = f"LCATracker(resume=True): the checkpoint's LCA state is at iteration {T:,}"
    if not out.exists():
        raise ConfigError(f"{where} but there is no bundle at out={out}; restore the bundle "
                          "written with this checkpoint, or start again without the state")
    try:
        with h5py.File(out, "r", swmr=True, locking=False) as f:  # swmr: a killed writer
            status, pid = str(f.attrs.get("status", "")), int(f.attrs.get("writer_pid", 0))
            done = int(f["progress"][0])
            config = json.loads(f.attrs["config"])
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"{where} but out={out} is not a readable LCA bundle ({e})") from None
    if status == "complete":
        raise ConfigError(f"LCATracker(resume=True): out={out} is complete ({done:,} "
                          "iterations); there is nothing to resume (choose another out= for "
                          "a new run)")
    if process_alive(pid):
        raise ConfigError(f"LCATracker(resume=True): out={out} is being written by process "
                          f"{pid}, which is still running; stop it first")
    if done < T:
        raise ConfigError(f"{where} but the bundle out={out} holds only {done:,} iterations: "
                          f"they are not of the same run (the checkpoint is at iteration "
                          f"{T:,}, the bundle at {done:,}); restore the bundle written with "
                          "this checkpoint, or the checkpoint of iteration "
                          f"{done:,} or earlier")
    names = state["tracker"]["parameters"]
    if config.get("parameters") not in (None, names):
        raise ConfigError(f"{where} but out={out} holds the LCA of other parameters "
                          f"({len(config['parameters'])} tensors, the state {len(names)}); "
                          "it is the bundle of another model")
    differ = [f"{k}={options[k]!r} (the bundle {config[k]!r})" for k in options
              if k in config and _plain(config[k]) != _plain(options[k])]
    if differ:
        raise ConfigError(f"LCATracker(resume=True): resumed with {', '.join(differ)}; a "
                          f"resumed run keeps the options out={out} was started with")


def check_ranks(state: dict | None, names: list[str], theta: torch.Tensor) -> None:
    """Every rank, at start (collectives): all ranks hold rank 0's θ, and a resumed model is
    the one the state was saved with.

    Raises:
        RuntimeError: the ranks' θ differ. ConfigError: :func:`check_model` on any rank.
    """
    if not same_on_all_ranks(theta):
        raise RuntimeError("LCATracker: the ranks hold different parameters; train the model "
                           "as DistributedDataParallel (it keeps them equal)")
    if state is not None:
        raise_together(check_model(state, names, theta), theta.device)


def check_model(state: dict, names: list[str], theta: torch.Tensor) -> ConfigError | None:
    """Every rank: the model being resumed is the one the state was saved with, at θ_T (the
    error, or None)."""
    saved = state["tracker"]
    T = int(state["T"])
    if saved["parameters"] != names or saved["n_params"] != theta.numel():
        return ConfigError(f"LCATracker.load_state_dict: the state is of a model with "
                           f"{saved['n_params']:,} parameters in {len(saved['parameters'])} "
                           f"tensors; this one has {theta.numel():,} in {len(names)}")
    if saved["theta_sha256"] != theta_digest(theta):
        return ConfigError(f"LCATracker.load_state_dict: the model's parameters are not the "
                           f"ones the LCA state was saved with at iteration {T:,}; load the "
                           "model, the optimizer and the LCA state from the same checkpoint "
                           "(model.load_state_dict before the tracker starts)")
    return None


def restart_note(out: Path) -> str | None:
    """Rank 0, ``resume=True`` without a state (no checkpoint yet): an unfinished bundle is
    started again from iteration 0 (what it holds is returned as a warning), a complete one or
    one still being written is refused.

    Raises:
        ConfigError: ``out`` is complete, or is being written.
    """
    if not out.exists():
        return None
    from lcaviz.bundle import BundleError, RunBundle

    try:
        with RunBundle.open(out) as b:
            status, T = b.status, b.n_iters
    except BundleError:
        status, T = "unreadable", 0  # killed while it was being created
    if status == "complete":
        raise ConfigError(f"LCATracker(resume=True): out={out} is complete ({T:,} iterations) "
                          "and no LCA state was loaded; there is nothing to resume (choose "
                          "another out= for a new run)")
    check_out_path(out, True, api=True)  # refuses a bundle whose writer is still running
    return (f"LCATracker(resume=True): no LCA state was loaded (no checkpoint yet), so the "
            f"unfinished run in {out} ({status}, {T:,} iterations) is started again from "
            "iteration 0")


def continue_bundle(tracker, state: dict) -> None:
    """Load the accumulators and the tracker's own record of the run from ``state`` and reopen
    the bundle at its iteration (rank 0; the others get a :class:`NullWriter`)."""
    saved = state["tracker"]
    tracker.t = int(state["T"])
    tracker.state.load(state["state"])
    tracker.loss0 = float(saved["loss0"])
    tracker.notes = list(saved["notes"])
    tracker._warned = dict(saved["warned"])
    tracker.residual.warned_at = saved["residual_warned_at"]
    tracker.residual.loss = float(saved["residual_loss"])
    total = state.get("running_total")
    tracker.writer = NullWriter() if not is_main() else BundleWriter.reopen(
        tracker.out, tracker.t, tracker.flush_seconds, None if total is None else total.numpy())


def _plain(value):
    """A value as the bundle's JSON config holds it (tuples are lists)."""
    return json.loads(json.dumps(value))

