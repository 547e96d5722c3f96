"""The planted run of :mod:`lcaviz.bundle.synthetic`: :class:`SyntheticRun` generates a fake
training run one iteration at a time (the module docstring there lists what is planted;
numpy only)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lcaviz.bundle.schema import RowSchedule, column_ranges, ranges_index
from lcaviz.bundle.synthetic_examples import SyntheticExamples
from lcaviz.bundle.writer import BundleWriter, IterationRecord, LayoutInfo, layer_stats

DEFAULT_LAYERS: tuple = (("fc1", (100, 784)), ("fc2", (50, 100)), ("fc3", (10, 50)))


class SyntheticRun:
    """A planted fake training run; :meth:`records` yields its iterations in order.

    Args:
        layers: ``(name, weight_shape)`` pairs; a 2-d shape is a ``Linear`` layer, a 4-d shape
            ``(out, in, kh, kw)`` a ``Conv2d``. Each layer gets a bias of ``shape[0]`` if ``bias``.
        n_iters: iterations T.
        n_classes: classes C.
        stride: per-parameter row schedule: an int S (rows are exact sums over windows of S
            iterations) or a spec such as ``"dense:50,5"`` (:class:`RowSchedule`).
        lca_layers: layer names that get per-parameter rows (None = all).
        storage: ``"float32"`` or ``"bfloat16"`` per-parameter rows.
        compression: ``"none"`` or ``"gzip"`` (lossless) for the per-parameter rows.
        seed: seed of every random draw (the bundle is a pure function of the arguments).
        per_class, save_trajectory, val_lca: which optional datasets exist.
        zero_fraction: fraction of parameters whose LCA is always exactly zero.
        help_fraction: probability that a live parameter helps, one float or one per layer.
        weibull_k: Weibull shape of |LCA|.
        sync_peaks: planted synchronous learning moments per class (needs ``per_class``).
        flip_prob: per-iteration probability that a weight's movement changes direction.
        dtype: dtype of the per-parameter draws (float32 is twice as fast as float64).
        examples: N > 0: per-example LCA over a planted training set of N examples.
        tracked_examples: N_e < N of them tracked (a seeded subset); None: all.
        thumbnail: side of the examples' square uint8 images (0: none).
        example_text: texts ``"a + b ≡ c (mod C)"`` instead of images.
        label_noise: fraction of the N labels flipped (stored in ``label_noise``).
        val_examples: N_v > 0 (needs ``val_lca`` and ``examples``): per-example LCA of the
            validation loss over a planted validation set of N_v examples, all tracked.
        heads: H > 0: named groups ``{layer}.q.head{h}`` and ``{layer}.k.head{h}`` (2·H
            contiguous pieces of every layer but the last; the last layer is one group named
            after it), ``lca_group`` per iteration and, with examples, per-example values of
            the split groups (``example_groups``: all but the last).
    """

    def __init__(self, *, layers: Sequence = DEFAULT_LAYERS, n_iters: int = 200,
                 n_classes: int = 10, stride: int | str = 1, seed: int = 0,
                 per_class: bool = True, lca_layers: Sequence[str] | None = None,
                 storage: str = "float32", compression: str = "none",
                 save_trajectory: bool = False, val_lca: bool = False, bias: bool = True,
                 zero_fraction: float = 0.2, help_fraction: float | Sequence[float] = 0.55,
                 weibull_k: float = 0.6, sync_peaks: int = 0, flip_prob: float = 0.15,
                 method: str = "rk4", dtype=np.float32, examples: int = 0,
                 tracked_examples: int | None = None, thumbnail: int = 8,
                 example_text: bool = False, label_noise: float = 0.0,
                 val_examples: int = 0, heads: int = 0):
        self.n_iters, self.n_classes = int(n_iters), int(n_classes)
        self.schedule, self.storage = RowSchedule.parse(stride), storage
        self.compression = compression
        self.seed, self.per_class, self.val_lca = seed, per_class, val_lca
        self.save_trajectory, self.method, self.dtype = save_trajectory, method, np.dtype(dtype)
        self.zero_fraction, self.weibull_k, self.flip_prob = zero_fraction, weibull_k, flip_prob
        self._build_layout(layers, bias)
        self.row_columns = column_ranges(self.param_offsets, self.tensor_layer, self.layer_names,
                                         None if lca_layers is None else list(lca_layers))
        self.row_index = None if lca_layers is None else ranges_index(self.row_columns)
        L = len(self.layer_names)
        h = np.broadcast_to(np.asarray(help_fraction, np.float64), (L,)).copy()
        self.help_fraction = h
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        P = self.n_params
        self.dead = rng.random(P) < zero_fraction  # (P,) bool
        jitter = rng.normal(0.0, 0.02, P)  # a realistic spread for the Fig. 3d histogram
        self.p_help = np.clip(h[self.param_layer] + jitter, 0.01, 0.99).astype(self.dtype)
        self.amp = np.where(self.dead, 0.0, 1.0).astype(self.dtype)  # (P,)
        self.scale = self._scale_schedule()  # (T,)
        self.sync_iters = self._plant_sync(sync_peaks)  # (C, sync_peaks)
        self.spike = self._spike_size()  # (L,)
        self.theta0 = (rng.normal(0, 0.05, P).astype(np.float32) if save_trajectory
                       else None)
        self.examples = SyntheticExamples(
            n_train=examples, n_tracked=tracked_examples, n_classes=self.n_classes, n_layers=L,
            n_iters=self.n_iters, seed=seed, thumbnail=thumbnail, text=example_text,
            label_noise=label_noise) if examples > 0 else None
        if val_examples and not (val_lca and examples > 0):
            raise ValueError("val_examples needs val_lca and examples")
        self.val_examples = SyntheticExamples(
            n_train=val_examples, n_tracked=None, n_classes=self.n_classes, n_layers=L,
            n_iters=self.n_iters, seed=seed, thumbnail=thumbnail, text=example_text,
            stream=30) if val_examples > 0 else None
        self._build_groups(int(heads))

    # -- static description ---------------------------------------------------------------
    def _build_layout(self, layers: Sequence, bias: bool) -> None:
        names, shapes, layer, mtype, sizes = [], [], [], [], []
        for li, (lname, shape) in enumerate(layers):
            shape = tuple(int(s) for s in shape)
            kind = "Conv2d" if len(shape) == 4 else "Linear"
            tensors = [(f"{lname}.weight", shape)] + ([(f"{lname}.bias", (shape[0],))] if bias
                                                      else [])
            for tname, tshape in tensors:
                names.append(tname)
                shapes.append(tshape)
                layer.append(li)
                mtype.append(kind)
                sizes.append(math.prod(tshape))
        self.param_names, self.param_shapes, self.param_module_type = names, shapes, mtype
        self.param_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.tensor_layer = np.asarray(layer, np.int32)
        self.layer_names = [str(n) for n, _ in layers]
        self.n_params = int(self.param_offsets[-1])
        self.param_layer = np.repeat(self.tensor_layer.astype(np.int64), sizes)  # (P,)
        contiguous = np.all(np.diff(self.param_layer) >= 0) and len(layers) > 0
        self.layer_starts = (np.searchsorted(self.param_layer, np.arange(len(layers)))
                             if contiguous else None)

    def _build_groups(self, heads: int) -> None:
        """``self.groups`` [(name, [(s, e)])] covering every parameter, their layers, the
        starts for ``reduceat`` and the split groups (None without heads)."""
        self.groups = self.example_groups = None
        if heads <= 0:
            return
        L, off = len(self.layer_names), self.param_offsets
        bounds = [(int(off[np.searchsorted(self.tensor_layer, li)]),
                   int(off[np.searchsorted(self.tensor_layer, li, side="right")]))
                  for li in range(L)]
        groups, layer = [], []
        for li, (s, e) in enumerate(bounds):
            if li == L - 1 or L == 1:
                groups.append((self.layer_names[li], [(s, e)]))
                layer.append(li)
                continue
            cuts = np.linspace(s, e, 2 * heads + 1).round().astype(int)
            names = [f"{self.layer_names[li]}.{p}.head{h}" for p in ("q", "k")
                     for h in range(heads)]
            for k, name in enumerate(names):
                groups.append((name, [(int(cuts[k]), int(cuts[k + 1]))]))
                layer.append(li)
        self.groups, self.group_layer = groups, np.asarray(layer, np.int64)
        self.group_starts = np.asarray([r[0][0] for _, r in groups], np.int64)
        split = np.bincount(self.group_layer, minlength=L)[self.group_layer] > 1
        self.example_groups = np.flatnonzero(split).astype(np.int64)

    def _per_group(self, a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.asarray(a, np.float64), self.group_starts)

    def layout(self) -> LayoutInfo:
        """The writer's layout, with the planted truth under ``config["synthetic"]``."""
        config = {
            "net": "synthetic", "dataset": "synthetic", "optimizer": "sgd", "lr": 0.1,
            "momentum": 0.9, "batch_size": 128, "iters": self.n_iters, "method": self.method,
            "seed": self.seed, "device": "cpu", "per_class": self.per_class,
            "val_lca": self.val_lca, "lca_rows": self.schedule.spec,
            "save_trajectory": self.save_trajectory,
            "synthetic": {
                "zero_fraction": self.zero_fraction, "weibull_k": self.weibull_k,
                "help_fraction": self.help_fraction.tolist(), "flip_prob": self.flip_prob,
                "sync_iters": self.sync_iters.tolist(), "n_dead": int(self.dead.sum()),
            },
        }
        if self.examples is not None:
            config["synthetic"]["examples"] = self.examples.truth()
        if self.val_examples is not None:
            config["per_example_val_of"] = self.val_examples.N
        return LayoutInfo(
            param_names=self.param_names, param_shapes=self.param_shapes,
            param_offsets=self.param_offsets, param_layer=self.tensor_layer,
            param_module_type=self.param_module_type, layer_names=self.layer_names,
            class_names=[f"class {c}" for c in range(self.n_classes)], config=config,
            method=self.method, row_schedule=self.schedule.spec, iters_planned=self.n_iters,
            row_columns=self.row_columns, lca_storage=self.storage,
            compression=self.compression,
            per_class=self.per_class, val_lca=self.val_lca,
            save_trajectory=self.save_trajectory, software={"lca_explorer": "synthetic"},
            examples=None if self.examples is None else self.examples.info(),
            label_noise=None if self.examples is None else self.examples.noise_record(),
            groups=self.groups,
            val_examples=None if self.val_examples is None else self.val_examples.info(),
            example_groups=None if self.examples is None else self.example_groups)

    def _scale_schedule(self) -> np.ndarray:
        """Per-iteration magnitude scale, chosen so that the loss drops by ~80 % of ln C."""
        t = np.arange(self.n_iters)
        tau = max(self.n_iters / 5, 1.0)
        shape = np.exp(-t / tau) + 0.05  # (T,)
        live = max(int((~self.dead).sum()), 1)
        mean_w = math.gamma(1 + 1 / self.weibull_k)
        bias = max(2 * float(np.mean(self.help_fraction)) - 1, 0.02)
        target_drop = 0.8 * math.log(max(self.n_classes, 2))
        s0 = target_drop / (live * mean_w * bias * shape.sum())
        return s0 * shape

    def _plant_sync(self, k: int) -> np.ndarray:
        """Distinct planted iterations per class, away from the ends (local minima need
        neighbours) and at least 3 apart so that ±2 shifts cannot realign two of them."""
        T = self.n_iters
        if k <= 0 or not self.per_class:
            return np.zeros((self.n_classes, 0), np.int64)
        grid = np.arange(2, T - 2, 3)
        if len(grid) < k:
            raise ValueError(f"cannot plant {k} synchronous peaks in {T} iterations")
        return np.stack([np.sort(self.rng.choice(grid, k, replace=False))
                         for _ in range(self.n_classes)])

    def _spike_size(self) -> np.ndarray:
        """Per-layer size of a planted learning moment: twice a layer's expected |LCA| at
        t = 0, so planted moments outrank the class-level noise everywhere in the run."""
        L = len(self.layer_names)
        live = np.bincount(self.param_layer, weights=~self.dead, minlength=L)  # (L,)
        mean_w = math.gamma(1 + 1 / self.weibull_k)
        bias = np.maximum(np.abs(2 * self.help_fraction - 1), 0.1)
        return 2.0 * live * mean_w * bias * self.scale[0] + 1e-12

    # -- dynamics ---------------------------------------------------------------------------
    def lca_draw(self, t: int) -> np.ndarray:
        """One iteration's per-parameter LCA, (P,) in ``self.dtype``."""
        dt, rng = self.dtype, self.rng
        u = rng.random(self.n_params, dtype=dt)  # one uniform gives both sign and magnitude
        p = self.p_help
        helped = u < p
        v = np.where(helped, u / p, (u - p) / (1 - p))  # uniform on [0, 1) again
        np.minimum(v, dt.type(1 - 1e-7), out=v)
        mag = (-np.log1p(-v)) ** dt.type(1 / self.weibull_k)  # Weibull(k, 1)
        mag *= self.amp
        mag *= dt.type(self.scale[t])
        return np.where(helped, -mag, mag)

    def _class_split(self, t: int, lca_layer: np.ndarray) -> np.ndarray:
        """(C, L) split whose sum over classes is ``lca_layer`` (last class takes the rest)."""
        C, rng = self.n_classes, self.rng
        L = lca_layer.size
        # independent shares per layer: without planted moments, layers are not synchronous
        share = rng.dirichlet(np.full(C, 20.0), size=L).T  # (C, L), columns sum to 1
        noise = rng.normal(0.0, 1.0, (C, L)) * np.abs(lca_layer) / C  # (C, L)
        noise -= noise.mean(axis=0)
        out = share * lca_layer[None, :] + noise
        for c in np.nonzero((self.sync_iters == t).any(axis=1))[0]:
            out[c] -= self.spike  # a learning moment in every layer of class c
            out[np.arange(C) != c] += self.spike / (C - 1)
        out[-1] = lca_layer - out[:-1].sum(axis=0)
        return out

    def _layer_stats(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``layer_stats`` for contiguous layers, with reduceat instead of three bincounts."""
        starts = self.layer_starts
        if starts is None:
            return layer_stats(a, self.param_layer, len(self.layer_names))
        sums = np.add.reduceat(a, starts, dtype=np.float64)
        helped = np.add.reduceat(a < 0, starts, dtype=np.int64).astype(np.int32)
        hurt = np.add.reduceat(a > 0, starts, dtype=np.int64).astype(np.int32)
        return sums, helped, hurt

    def records(self) -> Iterator[IterationRecord]:
        """Yield every iteration's record; ``lca_row`` is set when a row's window closes.

        After the last record, :attr:`partial_row` (and :attr:`partial_val_row`) hold the
        open window's sums (or ``None``): the caller appends them before closing a complete run.
        """
        T, L, P = self.n_iters, len(self.layer_names), self.n_params
        keep = self.row_index
        rng = self.rng
        window = np.zeros(P, np.float64)
        vwindow = np.zeros(P, np.float64) if self.val_lca else None
        self.help_iters = np.zeros(P, np.int32)
        self.nonzero_iters = np.zeros(P, np.int32)
        self.loss0 = loss = math.log(max(self.n_classes, 2))
        vloss = loss
        theta = None if self.theta0 is None else self.theta0.copy()
        direction = np.where(rng.random(P) < 0.5, -1.0, 1.0).astype(np.float32)
        for t in range(T):
            a = self.lca_draw(t)  # (P,)
            self.help_iters += a < 0
            self.nonzero_iters += a != 0
            lca_layer, helped, hurt = self._layer_stats(a)
            total = float(lca_layer.sum())
            residual = float(rng.normal(0.0, 1e-3 * abs(total) + 1e-9))
            loss = loss + total + residual
            window += a
            rec = IterationRecord(
                loss_train=loss, acc_train=float(np.clip(1 - loss / self.loss0, 0, 1) * 0.98),
                loss_minibatch=loss + float(rng.normal(0, 0.05)), residual=residual,
                splits=1 if self.method != "adaptive" else int(rng.integers(1, 4)),
                lca_layer=lca_layer, help_count=helped, hurt_count=hurt,
                seconds=float(0.01 + 0.002 * rng.random()))
            close = self.schedule.closes_after(t)
            if close:
                rec.lca_row = window if keep is None else window[keep]
                window = np.zeros(P, np.float64)
            if self.per_class:
                rec.lca_class_layer = self._class_split(t, lca_layer)
            if self.examples is not None:
                rec.example, rec.example_loss_before, rec.example_loss_after = \
                    self.examples.step(t, lca_layer, residual)
            if self.groups is not None:
                rec.lca_group = self._per_group(a)
                if self.examples is not None:
                    eg = self.example_groups
                    rec.example_group = self.examples.groups_of_last(
                        rec.lca_group[eg], self.group_layer[eg])
            if theta is not None:
                flip = rng.random(P, dtype=np.float32) < self.flip_prob
                direction[flip] *= -1
                step = np.abs(a) / (self.scale[t] + 1e-30) * np.float32(1e-3)
                theta = theta + np.where(self.dead, 0, direction * step).astype(np.float32)
                rec.theta = theta
            if vwindow is not None:
                va = 0.9 * a + rng.normal(0, 0.3, P).astype(self.dtype) * np.abs(a)
                vlayer = np.bincount(self.param_layer, weights=va, minlength=L)
                vres = float(rng.normal(0.0, 1e-3 * abs(vlayer.sum()) + 1e-9))
                vloss = vloss + float(vlayer.sum()) + vres
                vwindow += va
                rec.loss_val, rec.acc_val = vloss, float(np.clip(1 - vloss / self.loss0, 0, 1))
                rec.lca_val_layer, rec.val_residual = vlayer, vres
                if self.groups is not None:
                    rec.lca_val_group = self._per_group(va)
                if self.val_examples is not None:
                    rec.val_example, rec.val_example_loss_before, \
                        rec.val_example_loss_after = self.val_examples.step(t, vlayer, vres)
                    if self.groups is not None:
                        eg = self.example_groups
                        rec.val_example_group = self.val_examples.groups_of_last(
                            rec.lca_val_group[eg], self.group_layer[eg])
                if close:
                    rec.lca_val_row = vwindow if keep is None else vwindow[keep]
                    vwindow = np.zeros(P, np.float64)
            yield rec
        open_window = T > 0 and not self.schedule.closes_after(T - 1)
        cut = (lambda w: w) if keep is None else (lambda w: w[keep])
        self.partial_row = cut(window) if open_window else None
        self.partial_val_row = cut(vwindow) if open_window and vwindow is not None else None

    def create_writer(self, path: str | Path, flush_seconds: float = 2.0) -> BundleWriter:
        """A :class:`BundleWriter` for this run, θ_0 already written."""
        loss0 = math.log(max(self.n_classes, 2))
        return BundleWriter.create(path, self.layout(), theta0=self.theta0, loss_train0=loss0,
                                   acc_train0=0.0, loss_val0=loss0 if self.val_lca else None,
                                   acc_val0=0.0 if self.val_lca else None,
                                   flush_seconds=flush_seconds)
