"""Every setting of an LCA training run, validated in one place."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from compute.data.modular import DEFAULT_MODULUS, DEFAULT_TRAIN_FRACTION, check_modular
from compute.lca.integrator import METHODS
from lcaviz.bundle.schema import COMPRESSIONS, STORAGES, RowSchedule, ScheduleError

NETS = ("mnist_fc", "lenet", "allcnn", "resnet20", "transformer")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "synthetic", "modular-addition")
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("float32", "float64")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
UPDATE_MASKS = ("none", "helping")  # --update-mask


class ConfigError(ValueError):
    """A run setting is invalid; the message says which and why."""


@dataclass
class RunConfig:
    """One LCA run. Serialised as JSON into the bundle's ``config`` attribute."""

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
    method: str = "rk4"
    tol: float = 1e-3
    # adaptive: if > 0, a step is accepted only when |residual| < tol AND |residual| <= rtol·|ΔL|
    rtol: float = 0.0
    max_halvings: int = 8
    lca_error_every: int = 0  # K > 0: at iterations 0, K, 2K, ... an error estimate (4x intervals)
    # the causal test (lca/counterfactual.py): at iterations 0, K, 2K, ... the full loss after
    # only the helping / hurting / zero-LCA coordinates of the step (counterfactual_every = K);
    # update_mask "helping": apply only the coordinates whose first-order LCA is negative
    counterfactual_every: int = 0
    update_mask: str = "none"
    # cheaper LCA (compute/run/approx.py, docs/approximations.md): allocate the loss of a stratified
    # subset (a count, a fraction or a percentage; None: every training example), fresh each
    # iteration if lca_data_resample; allocate only iterations 0, K, 2K, ... (lca_every = K);
    # evaluate the full training loss every K iterations (full_loss_every = K; 0: never)
    lca_data: str | None = None
    lca_data_resample: bool = False
    lca_every: int = 1
    full_loss_every: int = 0
    # examples per full-dataset pass; "auto": the largest that fits the memory budget (measured
    # on the first evaluation, compute/lca/chunk_size.py). Never changes the loss of a net without
    # BatchNorm; on a BatchNorm net without bn_group an integer is the group (deprecated).
    chunk_size: int | str = "auto"
    bn_group: int | None = None  # BatchNorm nets: examples per normalisation group (None: 1000)
    chunking: str | None = None
    per_class: bool = True
    val_lca: bool = False
    lca_stride: int = 1  # shorthand for lca_rows "stride:S"
    lca_rows: str | None = None  # row schedule, e.g. "dense:220,5" (lcaviz.bundle.RowSchedule)
    lca_layers: list[str] | None = None  # layers with per-parameter rows (None: all, []: none)
    lca_storage: str = "float32"  # per-parameter rows: float32 or bfloat16
    lca_compression: str = "none"  # per-parameter rows: none or gzip (lossless)
    save_trajectory: bool = False
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
    compile: bool = False  # torch.compile the full-dataset passes (opt-in; see --precision-check)
    # CUDA matmuls and cuDNN convs in full fp32 unless this is set: TF32 flips ~1 % of the
    # per-parameter LCA signs of ResNet-20 on an H100 while the residual stays tiny
    allow_tf32: bool = False
    checkpoint_every: int = 50  # iterations between resumable checkpoints ...
    checkpoint_seconds: float = 120.0  # ... or seconds, whichever comes first
    # modular-addition (compute/data/modular.py): p, and the fraction of the p² pairs that train
    modulus: int = DEFAULT_MODULUS
    train_fraction: float = DEFAULT_TRAIN_FRACTION

    def row_schedule(self) -> RowSchedule:
        """The per-parameter row schedule (``--lca-rows``, else ``--lca-stride``)."""
        return RowSchedule.parse(self.lca_rows if self.lca_rows else self.lca_stride)

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
        _choice("net", self.net, NETS)
        _choice("dataset", self.dataset, DATASETS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("method", self.method, METHODS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("memory-format", self.memory_format, MEMORY_FORMATS)
        if self.chunking is not None:
            _choice("chunking", self.chunking, ("class", "mixed"))
        _positive("lr", self.lr)
        _positive("tol", self.tol)
        _positive("checkpoint-seconds", self.checkpoint_seconds)
        _choice("lca-storage", self.lca_storage, STORAGES)
        _choice("lca-compression", self.lca_compression, COMPRESSIONS)
        try:
            self.row_schedule()
        except ScheduleError as e:
            raise ConfigError(str(e)) from None
        _chunks(self)
        for name in ("batch_size", "iters", "lca_stride", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"--betas must each be in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not (isinstance(self.rtol, int | float) and math.isfinite(self.rtol)
                and self.rtol >= 0):
            raise ConfigError(f"--rtol must be a number >= 0, got {self.rtol}")
        if self.rtol > 0 and self.method != "adaptive":
            raise ConfigError(f"--rtol only applies to --method adaptive (got --method "
                              f"{self.method}); rk4 and first_order do not refine")
        if not isinstance(self.lca_error_every, int) or self.lca_error_every < 0:
            raise ConfigError(f"--lca-error-every must be an integer >= 0, got "
                              f"{self.lca_error_every}")
        _approximations(self)
        _causal(self)
        if not 0 <= self.max_halvings <= 16:
            raise ConfigError(f"--max-halvings must be in 0..16, got {self.max_halvings}")
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
        return self


def check_memory_format(requested: str, input_shape: tuple[int, ...]) -> None:
    """channels_last only makes sense for (C, H, W) image inputs."""
    if requested == "channels_last" and len(input_shape) != 3:
        raise ConfigError(f"--memory-format channels_last needs image inputs (C, H, W), "
                          f"got input shape {input_shape}")


def _chunks(cfg: RunConfig) -> None:
    """--chunk-size (a positive integer or auto) and --bn-group (whole groups per chunk)."""
    c, g = cfg.chunk_size, cfg.bn_group
    if c != "auto" and (isinstance(c, bool) or not isinstance(c, int) or c <= 0):
        raise ConfigError(f"--chunk-size must be a positive integer or 'auto', got {c!r}")
    if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g <= 0):
        raise ConfigError(f"--bn-group must be a positive integer, got {g!r}")
    if g is not None and c != "auto" and c % g:
        raise ConfigError(f"--chunk-size {c} must be a whole number of --bn-group {g} groups "
                          "(or auto)")


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


def _approximations(cfg: RunConfig) -> None:
    """--lca-data, --lca-data-resample, --lca-every and --full-loss-every."""
    from compute.lca.subset import subset_size

    for name in ("lca_every", "full_loss_every"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "lca_every" else 0):
            low = 1 if name == "lca_every" else 0
            raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {v}")
    if cfg.lca_data is not None:
        try:
            subset_size(cfg.lca_data, 10**15)  # the syntax; the size is checked against N later
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if cfg.lca_data_resample and cfg.lca_data is None:
        raise ConfigError("--lca-data-resample needs --lca-data N|fraction (the subset size)")


def _causal(cfg: RunConfig) -> None:
    """--counterfactual-every and --update-mask."""
    v = cfg.counterfactual_every
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"--counterfactual-every must be an integer >= 0, got {v}")
    _choice("update-mask", cfg.update_mask, UPDATE_MASKS)
    if cfg.update_mask != "none" and cfg.lca_every > 1:
        raise ConfigError("--update-mask needs the gradient at every theta_t, which --lca-every "
                          f"{cfg.lca_every} does not evaluate; drop one of them")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown --{name} {value!r}; choose one of: {', '.join(allowed)}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"--{name} must be a positive number, got {value}")
