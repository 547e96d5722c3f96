"""The per-example part of a synthetic run (:mod:`lcaviz.bundle.synthetic`; numpy only).

A planted training set of N examples with C classes, of which N_e are tracked (all by default).
Each iteration's per-layer LCA is split over the N examples so that ``Σ_n E[t, n, l] =
lca_layer[t, l]`` exactly (to float rounding), and the per-example losses follow it:
``ℓ_n(θ_{t+1}) = ℓ_n(θ_t) + N Σ_l E[t, n, l] + residual_t`` (so their mean moves as the
allocated loss does). Planted, and recorded by :meth:`SyntheticExamples.truth`:

* label noise: a seeded ``label_noise`` fraction of examples get another class; their LCA
  raises their loss in every layer but the last during the first half of the run and the
  last layer lowers it in the second half (memorisation), compensated by the other examples;
* thumbnails (``thumbnail`` × ``thumbnail`` uint8): a bright bar on black at an angle set by the
  true class, with grain; or texts ``"a + b ≡ c (mod C)"`` instead;
* per split group (:meth:`SyntheticExamples.groups_of_last`): each layer's ``E[:, l]`` split
  over its groups so that ``Σ_{s in l} E_group[n, s] = E[n, l]`` and, over all N examples,
  ``Σ_n E_group[:, s] = lca_group[s]``.

A run's validation examples are a second instance (another ``stream`` of draws).
"""

from __future__ import annotations

import math

import numpy as np

from lcaviz.bundle.examples import ExampleInfo


class SyntheticExamples:
    """Per-example values of a synthetic run.

    Args:
        n_train: N, the examples the loss averages over.
        n_tracked: N_e ≤ N tracked (a seeded subset, sorted), or None for all.
        n_classes, n_layers, n_iters: of the run.
        seed: seed of every draw here.
        thumbnail: side of the square images (e.g. 8 or 28); 0: none.
        text: give each example a text instead of an image.
        label_noise: fraction of labels flipped (0: no ``label_noise`` group).
        stream: which stream of the seed's draws (another for the validation examples).
    """

    def __init__(self, *, n_train: int, n_tracked: int | None, n_classes: int, n_layers: int,
                 n_iters: int, seed: int, thumbnail: int = 8, text: bool = False,
                 label_noise: float = 0.0, stream: int = 24):
        rng = np.random.default_rng([seed, stream])
        self.stream = stream
        self._group_rng = np.random.default_rng([seed, stream, 1])
        self._E: np.ndarray | None = None  # the last step's E of all N examples
        self.N, self.C, self.L, self.T = int(n_train), int(n_classes), int(n_layers), n_iters
        self.rng, self.seed, self.fraction = rng, seed, float(label_noise)
        self.true_label = np.arange(self.N) % self.C
        rng.shuffle(self.true_label)
        self.label = self.true_label.copy()
        k = int(round(self.fraction * self.N))
        self.flipped = np.sort(rng.choice(self.N, k, replace=False)) if k else np.zeros(0, int)
        if k:
            shift = rng.integers(1, max(self.C, 2), k)  # another class, uniformly
            self.label[self.flipped] = (self.true_label[self.flipped] + shift) % self.C
        self.noisy = np.zeros(self.N, bool)
        self.noisy[self.flipped] = True
        n_e = self.N if n_tracked is None else min(int(n_tracked), self.N)
        self.index = (np.arange(self.N) if n_e == self.N
                      else np.sort(rng.choice(self.N, n_e, replace=False)))
        z = rng.normal(0.0, 1.0, self.N)
        self.loss = math.log(max(self.C, 2)) * (1 + 0.1 * (z - z.mean()))  # (N,) ℓ_n(θ_0)
        self.thumbnail, self.text = int(thumbnail), bool(text)

    def info(self) -> ExampleInfo:
        """What the bundle stores about the tracked examples."""
        idx = self.index
        rng = np.random.default_rng([self.seed, self.stream + 1])  # info() can be repeated
        thumbs = (self._thumbnails(self.true_label[idx], rng)
                  if self.thumbnail and not self.text else None)
        texts = None
        if self.text:
            a = rng.integers(0, self.C, idx.size)
            b = (self.label[idx] - a) % self.C
            texts = [f"{x} + {y} ≡ {c} (mod {self.C})" for x, y, c in
                     zip(a, b, self.label[idx], strict=True)]
        return ExampleInfo(index=idx, label=self.label[idx], thumbnail=thumbs, text=texts)

    def noise_record(self) -> dict | None:
        """The ``label_noise`` of the layout, or None without label noise."""
        if not self.fraction:
            return None
        return {"fraction": self.fraction, "seed": self.seed, "flipped": self.flipped,
                "original": self.true_label[self.flipped]}

    def truth(self) -> dict:
        """The planted facts, for ``config["synthetic"]["examples"]``."""
        return {"n_train": self.N, "n_tracked": int(self.index.size),
                "flipped": self.flipped.tolist(), "memorise_from": self.T // 2}

    def step(self, t: int, lca_layer: np.ndarray, residual: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Iteration t: ``(E[t] of the tracked (N_e, L), ℓ(θ_t), ℓ(θ_{t+1}))``, float64."""
        N, L = self.N, self.L
        lca_layer = np.asarray(lca_layer, np.float64)
        noise = self.rng.normal(0.0, 0.5, (N, L))
        noise -= noise.mean(axis=0)  # zero-sum over examples: Σ_n E stays lca_layer
        E = (1.0 + noise) * (lca_layer / N)[None, :]
        k = int(self.noisy.sum())
        if k and k < N:
            half = max(self.T // 2, 1)
            plant = np.zeros(L)
            if t < half and L > 1:
                plant[:-1] = 1.0 / half / (L - 1) / N  # their loss rises by ~1 over the half
            elif t >= half:
                plant[-1] = -2.0 / max(self.T - half, 1) / N  # then the last layer memorises
            E[self.noisy] += plant
            E[~self.noisy] -= plant * k / (N - k)
        before = self.loss.copy()
        self.loss = self.loss + N * E.sum(axis=1) + residual
        self._E = E
        idx = self.index
        return E[idx], before[idx], self.loss[idx].copy()

    def groups_of_last(self, lca_group: np.ndarray, group_layer: np.ndarray) -> np.ndarray:
        """The last :meth:`step`'s values per group (G_s,) of the tracked examples,
        (N_e, G_s) float64: ``group_layer`` (G_s,) is each group's layer and ``lca_group``
        (G_s,) its LCA in this step; the groups of a layer must be all of it."""
        E, rng = self._E, self._group_rng
        lca_group = np.asarray(lca_group, np.float64)
        layer = np.asarray(group_layer, np.int64)
        lca_layer = np.bincount(layer, weights=lca_group, minlength=self.L)
        share = np.divide(lca_group, lca_layer[layer], out=np.zeros_like(lca_group),
                          where=lca_layer[layer] != 0)
        out = E[:, layer] * share[None, :]  # Σ over a layer's groups: E[:, l]
        noise = rng.normal(0.0, 0.3, out.shape) * np.abs(E[:, layer])
        for col in np.unique(layer):  # zero-sum over a layer's groups and over the examples
            cols = layer == col
            noise[:, cols] -= noise[:, cols].mean(axis=1, keepdims=True)
        noise -= noise.mean(axis=0)
        return (out + noise)[self.index]

    def _thumbnails(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (n, s, s): on black, a bright bar through the centre at the angle of the
        class, with grain (one template per class, so 55,000 images take well under 1 s)."""
        s = self.thumbnail
        yy, xx = np.mgrid[0:s, 0:s] - (s - 1) / 2
        angle = np.pi * np.arange(self.C) / max(self.C, 1)
        dist = np.abs(np.cos(angle)[:, None, None] * yy - np.sin(angle)[:, None, None] * xx)
        bars = dist < max(s / 10, 0.75)  # (C, s, s)
        mask = bars[classes]
        out = np.zeros(mask.shape, np.uint8)
        out[mask] = rng.integers(160, 256, int(mask.sum()), dtype=np.uint8)
        return out
