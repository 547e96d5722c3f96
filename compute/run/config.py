"""Every setting of an LCA training run, validated in one place."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from compute.data.modular import DEFAULT_MODULUS, DEFAULT_TRAIN_FRACTION, check_modular
from compute.engine.options import (  # noqa: F401 - ConfigError re-exported
    ConfigError,
    LCAOptions,
    _choice,
    _positive,
    validate_options,
)

NETS = ("mnist_fc", "lenet", "allcnn", "resnet20", "transformer")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "synthetic", "modular-addition")
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("float32", "float64")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
UPDATE_MASKS = ("none", "helping")  # --update-mask


@dataclass
class RunConfig(LCAOptions):
    """One LCA run: the LCA options (:class:`~compute.engine.options.LCAOptions`, shared with
    ``LCATracker``) and what ``lca-run`` builds and trains. Serialised as JSON into the
    bundle's ``config`` attribute."""

    net: str = "mnist_fc"
    dataset: str = "mnist"
    data_root: str | None = None
    rgb32: bool = False  # pad 28×28 grey images to 32×32×3 (conv nets without CIFAR-10)
    train_size: int | None = None  # use a prefix of the train split
    val_size: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    batch_size: int = 250
    iters: int = 1000
    # update_mask "helping": apply only the coordinates whose first-order LCA is negative
    update_mask: str = "none"
    val_lca: bool = False
    layer_lr: dict[str, float] = field(default_factory=dict)
    layer_momentum: dict[str, float] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    precision: str = "float32"
    # "auto": channels_last (NHWC) for conv nets on CUDA when the automatic precision check
    # passes with it, else contiguous (NCHW; always on CPU, where NHWC fp32 BatchNorm loses ~100×
    # precision: ResNet20 per-parameter LCA 1e-3 off fp64); the choice is recorded.
    memory_format: str = "auto"
    # CUDA matmuls and cuDNN convs in full fp32 unless this is set: TF32 flips ~1 % of the
    # per-parameter LCA signs of ResNet-20 on an H100 while the residual stays tiny
    allow_tf32: bool = False
    checkpoint_every: int = 50  # iterations between resumable checkpoints ...
    checkpoint_seconds: float = 120.0  # ... or seconds, whichever comes first
    # modular-addition (compute/data/modular.py): p, and the fraction of the p² pairs that train
    modulus: int = DEFAULT_MODULUS
    train_fraction: float = DEFAULT_TRAIN_FRACTION
    # flip the labels of a seeded fraction of the training split (compute/data/noise.py); the
    # bundle's label_noise/ records which (the mislabeled examples of docs/findings.md)
    label_noise: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        return cls(**known)

    def validate(self) -> RunConfig:
        """Raise ConfigError naming the first bad setting; return self when all are fine."""
        _choice("--net", self.net, NETS)
        _choice("--dataset", self.dataset, DATASETS)
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--memory-format", self.memory_format, MEMORY_FORMATS)
        _positive("--lr", self.lr)
        _positive("--checkpoint-seconds", self.checkpoint_seconds)
        validate_options(self)  # the LCA options, as LCATracker checks them
        for name in ("batch_size", "iters", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"--betas must each be in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        _choice("--update-mask", self.update_mask, UPDATE_MASKS)
        if self.update_mask != "none" and self.lca_every > 1:
            raise ConfigError("--update-mask needs the gradient at every theta_t, which "
                              f"--lca-every {self.lca_every} does not evaluate; drop one of them")
        for layer, lr in self.layer_lr.items():
            if not (math.isfinite(lr) and lr >= 0):
                raise ConfigError(f"--layer-lr {layer}={lr}: learning rate must be >= 0")
        for layer, m in self.layer_momentum.items():
            if not 0 <= m < 1:
                raise ConfigError(f"--layer-momentum {layer}={m}: momentum must be in [0, 1)")
        if self.layer_momentum and self.optimizer != "sgd":
            raise ConfigError("--layer-momentum only applies to --optimizer sgd")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        _modular(self)
        if not (isinstance(self.label_noise, int | float) and 0 <= self.label_noise < 1):
            raise ConfigError(f"--label-noise must be a fraction in [0, 1), got "
                              f"{self.label_noise}")
        if self.label_noise > 0 and self.dataset == "modular-addition":
            raise ConfigError("--label-noise flips class labels of an image dataset; "
                              "modular-addition's labels are its answers (not noise)")
        return self


def check_memory_format(requested: str, input_shape: tuple[int, ...]) -> None:
    """channels_last only makes sense for (C, H, W) image inputs."""
    if requested == "channels_last" and len(input_shape) != 3:
        raise ConfigError(f"--memory-format channels_last needs image inputs (C, H, W), "
                          f"got input shape {input_shape}")


def _modular(cfg: RunConfig) -> None:
    """--modulus / --train-fraction: valid, and only where they act (modular-addition)."""
    try:
        check_modular(cfg.modulus, cfg.train_fraction)
    except ValueError as e:
        raise ConfigError(f"--modulus/--train-fraction: {e}") from None
    if ((cfg.modulus, cfg.train_fraction) != (DEFAULT_MODULUS, DEFAULT_TRAIN_FRACTION)
            and cfg.dataset != "modular-addition"):
        raise ConfigError("--modulus and --train-fraction only apply to --dataset "
                          "modular-addition")
