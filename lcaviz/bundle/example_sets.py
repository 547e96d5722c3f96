"""The families of per-example datasets (:mod:`lcaviz.bundle.examples`): training or
validation examples, per layer or per split group (a transformer's heads), and the names of
their datasets (numpy-free; shared by the writer, the reader, repack and the checks)."""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val")
BYS = ("layer", "group")


@dataclass(frozen=True)
class ExampleSet:
    """One family of per-example datasets: the training or validation examples (``split``),
    per layer or per split group (``by``). The names follow one pattern: ``lca_example``,
    ``lca_example_group``, ``lca_val_example``, ``lca_val_example_group``, each with
    ``_cumsum_rows`` and ``_cumsum``; the per-layer sets also carry the losses
    (``loss[_val]_example``, ``…_last``) and ``lca[_val]_example_iters``."""

    split: str = "train"
    by: str = "layer"

    @property
    def _val(self) -> str:
        return "_val" if self.split == "val" else ""

    @property
    def rows(self) -> str:
        return f"lca{self._val}_example" + ("_group" if self.by == "group" else "")

    @property
    def cum_rows(self) -> str:
        return f"{self.rows}_cumsum_rows"

    @property
    def total(self) -> str:
        return f"{self.rows}_cumsum"

    @property
    def loss_rows(self) -> str:
        return f"loss{self._val}_example"

    @property
    def loss_last(self) -> str:
        return f"{self.loss_rows}_last"

    @property
    def iters(self) -> str:
        return f"lca{self._val}_example_iters"

    @property
    def meta(self) -> str:
        """The group of index / label / thumbnail / text of the split's examples."""
        return "val_examples" if self.split == "val" else "examples"

    @property
    def has_loss(self) -> bool:
        """Whether the set writes the losses and the iterations (the per-layer sets do; the
        per-group sets share them with their split's per-layer set)."""
        return self.by == "layer"

    @property
    def field(self) -> str:
        """The :class:`~lcaviz.bundle.layout.IterationRecord` field of its values."""
        return ("val_" if self.split == "val" else "") + "example" + (
            "_group" if self.by == "group" else "")

    @property
    def loss_field(self) -> str:
        return ("val_" if self.split == "val" else "") + "example_loss"

    def growing(self) -> tuple[str, ...]:
        """Its datasets that grow with the rows."""
        return (self.rows, self.cum_rows) + ((self.loss_rows,) if self.has_loss else ())


TRAIN = ExampleSet()
SETS = (TRAIN, ExampleSet("train", "group"), ExampleSet("val", "layer"),
        ExampleSet("val", "group"))  # the order of the writer's running state


def example_set(split: str = "train", by: str = "layer") -> ExampleSet:
    """The set of ``split`` ("train" | "val") and ``by`` ("layer" | "group"); ValueError
    for any other value."""
    if split not in SPLITS or by not in BYS:
        raise ValueError(f"split must be one of {SPLITS} and by one of {BYS}, got "
                         f"split={split!r}, by={by!r}")
    return ExampleSet(split, by)
