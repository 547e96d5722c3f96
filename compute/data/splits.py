"""The in-memory dataset types every loader returns (a module of their own: the loaders in
:mod:`compute.data.datasets` and :mod:`compute.data.modular` both build them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TensorDataset:
    """An in-memory labelled image set."""

    x: torch.Tensor  # (N, ...) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64
    class_names: list[str]
    name: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to(self, device: str | torch.device) -> TensorDataset:
        """Returns a copy with x and y on ``device``."""
        return TensorDataset(self.x.to(device), self.y.to(device), self.class_names, self.name)


@dataclass
class Splits:
    """Train / validation / test sets of one dataset (test may be absent)."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset | None
