"""Train a reference network and compute its exact full-dataset LCA online, into a bundle."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import h5py
import torch
from tqdm import tqdm

from compute.data.thumbnails import example_texts
from compute.engine.approx import RunFailed
from compute.engine.layout import run_layout
from compute.engine.record import capped_warning, postfix
from compute.engine.residual import residual_advice
from compute.engine.session import LCASession
from compute.lca.distributed import NullWriter, is_main, world
from compute.lca.params import flat_params
from compute.run.build import Run, build_run  # noqa: F401 - re-exported
from compute.run.checkpoint import (
    check_out_path,
    checkpoint_path,
    process_alive,
    restart_config,
    save_checkpoint,
    stored_config,
)
from compute.run.config import ConfigError, RunConfig
from compute.run.defaults import choose_memory_format
from compute.run.precision import auto_precision_check
from compute.run.step import minibatch_indices, train_step  # noqa: F401 - re-exported
from lcaviz.bundle.lock import BundleBusy, WriterLock
from lcaviz.bundle.size import size_note
from lcaviz.bundle.writer import BundleWriter, LayoutInfo


def _layout(run: Run, cfg: RunConfig, check: dict | None = None) -> LayoutInfo:
    device_name = (torch.cuda.get_device_name(torch.device(cfg.device))
                   if cfg.device.startswith("cuda") else f"cpu ({platform.processor() or 'x86'})")
    rank, size = world()
    config = {"source": "lca-run", **cfg.to_dict(), **run.approx_info, "world_size": size,
              "backend": torch.distributed.get_backend() if size > 1 else None,
              "precision_flags": run.precision_flags,
              "chunks": run.train_lca.objective.chunk_info,  # how --chunk-size was resolved
              "memory_format_choice": getattr(run, "memory_format_choice", None),
              "host_copy": run.host_copies.mode if run.host_copies else None}
    if check is not None:
        config["precision_check"] = check
    texts = (example_texts(cfg.dataset, run.x, run.y, run.examples.index, cfg.modulus)
             if run.examples is not None else None)
    val_texts = (example_texts(cfg.dataset, *run.val_data, run.val_examples.index, cfg.modulus)
                 if run.val_examples is not None else None)
    return run_layout(run, config, device_name=device_name, iters_planned=cfg.iters,
                      example_texts=texts, label_noise=run.label_noise,
                      val_example_texts=val_texts)


def run_lca(cfg: RunConfig | None, out: str | Path, *, resume: bool = False,
            overwrite: bool = False, progress: bool = True,
            stop_after: int | None = None) -> Path:
    """Train with online LCA, writing the bundle ``out`` (and ``out.ckpt`` checkpoints).

    Args:
        cfg: the run settings (ignored when resuming: the bundle's own config is used).
        out: bundle path. An existing file is never replaced unless ``overwrite``.
        resume: continue the killed run in ``out`` from its last checkpoint (from iteration
            0 with its recorded config if it was killed before its first checkpoint).
        overwrite: replace an existing ``out`` (never one whose writer is still running).
        progress: show a tqdm bar.
        stop_after: stop (as if killed, status stays ``running``) after this many iterations
            of this call; for tests of resume.

    Returns:
        The bundle path.
    """
    out = Path(out)
    lock = WriterLock(out)
    if out.parent.is_dir() and is_main():  # rank 0 writes; a missing directory: see below
        try:  # before anything touches the bundle or its checkpoint: one writer per --out
            lock.acquire()
        except BundleBusy as e:
            raise ConfigError(str(e)) from None
        except OSError as e:  # a read-only directory cannot hold the lock file either
            raise ConfigError(f"cannot write the bundle: directory {out.parent} is not "
                              f"writable ({e.strerror})") from None
    try:
        return _run_locked(cfg, out, resume, overwrite, progress, stop_after)
    finally:
        lock.release()


def _run_locked(cfg, out: Path, resume: bool, overwrite: bool, progress: bool,
                stop_after: int | None) -> Path:
    ckpt_path = checkpoint_path(out)
    if resume:
        if not ckpt_path.exists():
            cfg = restart_config(out)  # killed before its first checkpoint: start it again
            return _run_locked(cfg, out, False, True, progress, stop_after)
        cfg, session, T0 = _resume(out, ckpt_path)
        first_checkpoint = False
    else:
        cfg.validate()
        if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
            raise ConfigError(f"cannot write the bundle: directory {out.parent} is missing or "
                              "not writable")
        check_out_path(out, overwrite)
        # every float32 CUDA run checks its first iterations against float64 (a rebuilt run:
        # this one's state is untouched) and records the result; None on CPU / in float64
        cfg, check, layout_choice = choose_memory_format(cfg, auto_precision_check)
        run = build_run(cfg)
        run.memory_format_choice = layout_choice  # --memory-format auto: what and why
        session = _session(run, cfg)
        theta = flat_params(run.model)
        # θ_0's loss and gradient, counted once (a resume does not recount it)
        e0, v0, full0 = session.begin(theta)
        layout = _layout(run, cfg, check)
        if is_main():
            ckpt_path.unlink(missing_ok=True)  # a stale checkpoint of the replaced run
            if progress:
                print(size_note(layout, "--lca-rows", "--lca-layers"), file=sys.stderr)
        try:
            session.writer = NullWriter() if not is_main() else BundleWriter.create(
                out, layout, theta0=theta.cpu().numpy(),
                loss_train0=float(e0.loss),
                acc_train0=int(e0.correct) / len(run.y),
                loss_val0=float(v0.loss) if v0 else None,
                acc_val0=int(v0.correct) / len(run.val_lca.objective.y) if v0 else None,
                full_loss0=full0)
        except OSError as e:
            raise RunFailed(f"could not create {out}: {e}") from e
        T0, first_checkpoint = 0, True
    return _loop(cfg, session, T0, ckpt_path, progress, stop_after, first_checkpoint)


def _session(run: Run, cfg: RunConfig) -> LCASession:
    """The engine of an lca-run run (the tracker's, with lca-run's advice)."""
    return LCASession(run, residual_advice(f"--method {cfg.method}", "--method adaptive"))


def _loop(cfg: RunConfig, session: LCASession, T0: int, ckpt_path: Path, progress: bool,
          stop_after: int | None, first_checkpoint: bool = False) -> Path:
    """The reference minibatch loop: an optimizer step on iteration t's minibatch, then the
    engine's step; checkpoints every N iterations or M seconds."""
    run, state, writer = session.run, session.state, session.writer
    bar = tqdm(total=cfg.iters, initial=T0, disable=not (progress and is_main()), unit="it",
               desc="LCA")
    last_ckpt = time.monotonic()
    if run.host_copies is not None and run.host_copies.mode != "sync":  # CUDA: see host_copy
        session.writer = writer = run.host_copies.deferred(writer)
    try:
        if first_checkpoint:  # inside the try: a disk too small for it fails the run cleanly
            save_checkpoint(ckpt_path, 0, run, state, writer)
        for t in range(T0, cfg.iters):
            if stop_after is not None and t - T0 >= stop_after:
                if is_main():
                    writer.f.close()  # simulate a kill: no final status, no last checkpoint
                return writer.path
            start = time.perf_counter()
            mb_loss = train_step(run, t)
            _, st, warning = session.step(flat_params(run.model), mb_loss, start)
            bar.update(1)
            if st is not None:
                bar.set_postfix(postfix(st, state, cfg.method))
            if warning and is_main():
                bar.write(f"lca-run: warning: {warning}", file=sys.stderr)
            due = ((t + 1) % cfg.checkpoint_every == 0
                   or time.monotonic() - last_ckpt >= cfg.checkpoint_seconds)
            if due and t + 1 < cfg.iters:  # every N iterations or M seconds, whichever first
                session.write_counters()
                writer.flush()
                save_checkpoint(ckpt_path, t + 1, run, state, writer)
                last_ckpt = time.monotonic()
        session.finish()
        if is_main():
            ckpt_path.unlink(missing_ok=True)
            if (warning := capped_warning(state, cfg)) is not None:
                bar.clear()
                print(warning, file=sys.stderr)
        return writer.path
    except RunFailed as e:
        writer.close("failed", str(e))
        raise
    except KeyboardInterrupt:
        writer.close("failed", f"interrupted; resume with: lca-run --resume {writer.path}")
        raise
    except OSError as e:  # disk full, file system gone: keep the bundle readable
        try:
            writer.close("failed", f"write error: {e}")
        except Exception:  # noqa: BLE001 - the file may be beyond saving; report the cause
            pass
        raise RunFailed(f"could not write {writer.path}: {e}; the bundle keeps the iterations "
                        f"up to the last flush; resume with: lca-run --resume {writer.path}") from e
    except Exception as e:  # e.g. a peer process died (torch.distributed error): record why
        writer.close("failed", f"{type(e).__name__}: {e}")
        raise RunFailed(f"run stopped at a {type(e).__name__}: {e}; resume with: "
                        f"lca-run --resume {writer.path}") from e
    finally:
        bar.close()


def _resume(out: Path, ckpt_path: Path) -> tuple[RunConfig, LCASession, int]:
    """Rebuild a run from its bundle config and last checkpoint."""
    if not out.exists():
        raise ConfigError(f"--resume: no bundle at {out}")
    with h5py.File(out, "r", swmr=True, locking=False) as f:  # swmr: flags of a killed writer
        cfg = stored_config(f, out)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, foreign pickle: one clear line
        raise ConfigError(f"--resume: cannot read the checkpoint {ckpt_path} "
                          f"({type(e).__name__}: {_first_line(e)})") from None
    if process_alive(int(ckpt.get("pid", 0))):
        raise ConfigError(f"--resume: process {ckpt['pid']} that wrote {out} is still running; "
                          "stop it first (or wait for it to finish)")
    run = build_run(cfg)
    session = _session(run, cfg)
    try:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        session.state.load(ckpt["state"])
    except (RuntimeError, KeyError, ValueError, AttributeError) as e:
        raise ConfigError(f"--resume: the checkpoint {ckpt_path.name} does not match the model "
                          f"that {out.name}'s config builds ({_first_line(e)}); it belongs to "
                          "another run: restore that run's checkpoint, or start again with "
                          "--overwrite") from None
    T0 = int(ckpt["T"])
    total = ckpt.get("running_total")
    try:
        session.writer = BundleWriter.reopen(out, T0, running_total=None if total is None else
                                             total.numpy()) if is_main() else NullWriter()
    except OSError as e:  # e.g. the disk is still full: nothing was changed
        raise RunFailed(f"could not reopen {out} to resume: {e}") from e
    session.resume(T0, flat_params(run.model))
    return cfg, session, T0


def _first_line(e: BaseException) -> str:
    """An exception's message cut to one line: torch's state-dict errors run to pages, and
    their first line ("Error(s) in loading state_dict for Net:") names no tensor, so the first
    detail line is kept too."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    if not lines:
        return type(e).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:300].rstrip(":. ")
