"""Every LCA option, defined once: its name, default, validation and help text.

:class:`LCAOptions` is the part of a run's settings that says how the loss change is allocated
and stored, whoever trains the network. ``lca-run`` reads it as flags (its ``--help`` for these
flags is generated from the field metadata, :func:`add_flags`), :class:`~compute.run.config.
RunConfig` inherits it, and :class:`~compute.integrations.tracker.LCATracker` (with the
Lightning and Hugging Face callbacks, which pass keywords through) takes every field as a
keyword of the same name, default and validation (:func:`options_from_keywords`). The one
default that differs is ``per_class``: off in the tracker (see its docstring for the cost),
on for ``lca-run``'s reference nets (:data:`FACE_DEFAULTS`).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields

from compute.lca.integrator import METHODS
from lcaviz.bundle.schema import COMPRESSIONS, STORAGES, RowSchedule, ScheduleError


class ConfigError(ValueError):
    """A run setting is invalid; the message says which and why."""


def _opt(default, help: str, **flag):
    """A field with its help text and argparse settings (``flag``) as metadata."""
    kw = {"default_factory": default} if callable(default) else {"default": default}
    return field(**kw, metadata={"help": help, "flag": flag})


def chunk_size_arg(text: str) -> int | str:
    """``--chunk-size``: a positive integer or ``auto``."""
    import argparse

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") \
            from None


def per_example_arg(text: str) -> int | str:
    """``--per-example``: ``all`` or a positive integer K."""
    import argparse

    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected all or a positive integer, got {text!r}") \
            from None


@dataclass
class LCAOptions:
    """How a run's loss change is allocated and what the bundle stores (both faces)."""

    method: str = _opt("rk4", "path integral: gradient at the start only, trapezoid (1 new "
                       "gradient per step), Simpson (1,4,1)/6 (2), or adaptive Simpson until "
                       "|dL - sum A| < --tol", choices=METHODS)
    tol: float = _opt(1e-3, "adaptive: |dL - sum A| target", type=float)
    rtol: float = _opt(0.0, "adaptive: also require |dL - sum A| <= RTOL*|dL|; 0: off",
                       type=float)
    max_halvings: int = _opt(8, "adaptive: at most 2^N Simpson intervals per iteration",
                             type=int)
    chunk_size: int | str = _opt(
        "auto", "examples per full-dataset pass; auto: the largest whose forward+backward "
        "fits 25%% of free GPU memory / 1 GiB on CPU (never changes the loss; on a BatchNorm "
        "net without --bn-group an integer is the group, deprecated)",
        type=chunk_size_arg, metavar="N|auto")
    bn_group: int | None = _opt(
        None, "BatchNorm nets: examples per normalisation group, part of the loss (default: "
        "1000, the loss of earlier runs); several groups run per pass", type=int, metavar="N")
    chunking: str | None = _opt(None, "class-pure or data-order chunks (default: class "
                                "unless BatchNorm)", choices=("class", "mixed"))
    per_class: bool = _opt(True, "skip the per-class x layer split (default: split per class)",
                           action="store_false", flag="--no-per-class")
    lca_error_every: int = _opt(
        0, "at iterations 0, K, 2K, ... also integrate on 4x the Simpson intervals and store "
        "the per-parameter error; 0: off", type=int, metavar="K")
    counterfactual_every: int = _opt(
        0, "the causal test: at iterations 0, K, 2K, ... also evaluate the full loss after "
        "only the helping, only the hurting and only the zero-LCA coordinates of the step (3 "
        "forward passes); 0: off", type=int, metavar="K")
    lca_data: str | None = _opt(
        None, "allocate the loss of a seeded class-stratified subset: N examples, a fraction "
        "such as 0.1 or a percentage such as 5%% (default: all)", metavar="N|FRACTION",
        group="cheaper LCA (docs/approximations.md)")
    lca_data_resample: bool = _opt(
        False, "draw a fresh stratified subset of that size every iteration (unbiased for the "
        "full loss change; 3 gradients per rk4 step, not 2)", action="store_true",
        group="cheaper LCA (docs/approximations.md)")
    lca_every: int = _opt(
        1, "allocate only iterations 0, K, 2K, ... exactly (theta_t to theta_t+1); the others "
        "are not allocated and are marked so", type=int, metavar="K",
        group="cheaper LCA (docs/approximations.md)")
    full_loss_every: int = _opt(
        0, "also evaluate the full training loss at theta_0, theta_K, ... and theta_T (to "
        "calibrate a subset or sparse run); 0: never", type=int, metavar="K",
        group="cheaper LCA (docs/approximations.md)")
    lca_rows: str | None = _opt(
        None, "per-parameter rows: S (exact sums over windows of S iterations) or dense:N,S "
        "(one row per iteration for the first N, then windows of S); default: --lca-stride",
        metavar="SCHEDULE", group="what the bundle stores")
    lca_stride: int = _opt(1, "shorthand for --lca-rows S", type=int,
                           group="what the bundle stores")
    lca_layers: list[str] | None = _opt(
        None, "layers that get per-parameter rows; 'none' for aggregates only (per-layer, "
        "per-class, help/hurt stay for all; default: every layer)", metavar="L1,L2",
        group="what the bundle stores")
    lca_storage: str = _opt("float32", "per-parameter rows as float32, or bfloat16 (half the "
                            "size, ~3 significant digits, zeros and signs exact)",
                            choices=STORAGES, group="what the bundle stores")
    lca_compression: str = _opt("none", "lossless gzip + shuffle of the per-parameter rows "
                                "(smaller files, slower row reads)", choices=COMPRESSIONS,
                                group="what the bundle stores")
    save_trajectory: bool = _opt(False, "store theta_t every iteration", action="store_true",
                                 group="what the bundle stores")
    per_example: str | int | None = _opt(
        None, "also split each step's LCA among the training examples, per layer (the "
        "bundle's lca_example): all of them, or a seeded class-stratified subset of K "
        "(same cost, less storage); default: off", type=per_example_arg, nargs="?",
        const="all", metavar="all|K", group="what the bundle stores")
    compile: bool = _opt(False, "torch.compile the full-dataset gradient passes (slow first "
                         "iteration)", action="store_true", group="device and precision")

    def row_schedule(self) -> RowSchedule:
        """The per-parameter row schedule (``lca_rows``, else ``lca_stride``)."""
        return RowSchedule.parse(self.lca_rows if self.lca_rows else self.lca_stride)

    def lca_options(self) -> dict:
        """The :class:`LCAOptions` fields of this object, by name."""
        return {f.name: getattr(self, f.name) for f in fields(LCAOptions)}


OPTION_NAMES = tuple(f.name for f in fields(LCAOptions))
FACE_DEFAULTS = {"tracker": {"per_class": False}}  # the one default that differs by face


def flag_name(f) -> str:
    """The ``lca-run`` flag of an options field (``lca_every`` -> ``--lca-every``)."""
    return f.metadata["flag"].get("flag", "--" + f.name.replace("_", "-"))


def add_flags(parser, groups: dict) -> None:
    """Add every :class:`LCAOptions` field to ``parser`` as a flag (its help, default, type and
    choices from the field), in the argument group its metadata names (default ``LCA``).

    Args:
        parser: the ``argparse.ArgumentParser``.
        groups: argument groups by title, created on first use (shared with the caller).
    """
    d = LCAOptions()
    for f in fields(LCAOptions):
        kw = {k: v for k, v in f.metadata["flag"].items() if k not in ("flag", "group")}
        title = f.metadata["flag"].get("group", "LCA")
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        if kw.get("action") is None:
            kw["default"] = getattr(d, f.name)
        groups[title].add_argument(flag_name(f), dest=f.name, help=f.metadata["help"], **kw)


def options_from_args(args) -> dict:
    """The :class:`LCAOptions` fields from parsed ``lca-run`` flags."""
    out = {name: getattr(args, name) for name in OPTION_NAMES}
    out["lca_layers"] = _layers(out["lca_layers"])
    return out


def _layers(text: str | list[str] | None) -> list[str] | None:
    if text is None or isinstance(text, list):
        return text
    if text.strip().lower() == "none":
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


def options_from_keywords(keywords: dict, face: str = "tracker",
                          own: tuple[str, ...] = ()) -> LCAOptions:
    """The validated options of an API face (``LCATracker(..., **keywords)``): the face's
    defaults, then ``keywords``. ``own``: the face's other keywords (for the hint).

    Raises:
        TypeError: a keyword that is no option, naming the closest one.
        ConfigError: a bad value (the message names the keyword, as ``lca_every=``).
    """
    for k in keywords:
        if k not in OPTION_NAMES:
            close = difflib.get_close_matches(k, (*OPTION_NAMES, *own), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"LCATracker got an unknown keyword {k!r}{hint} (the LCA options: "
                            f"{', '.join(OPTION_NAMES)})")
    kw = {**FACE_DEFAULTS.get(face, {}), **keywords}
    if isinstance(kw.get("lca_rows"), int) and not isinstance(kw["lca_rows"], bool):
        kw["lca_rows"] = str(kw["lca_rows"])  # the tracker has always taken lca_rows=3
    kw["lca_layers"] = _layers(kw.get("lca_layers"))
    if kw.get("per_example") is True:  # the tracker's per_example=True: every example
        kw["per_example"] = "all"
    elif kw.get("per_example") is False:
        kw["per_example"] = None
    opts = LCAOptions(**kw)
    validate_options(opts, api=True)
    return opts


def _name(name: str, api: bool) -> str:
    return f"{name}=" if api else "--" + name.replace("_", "-")


def validate_options(o: LCAOptions, api: bool = False) -> None:
    """Raise ConfigError naming the first bad LCA option (as a flag, or ``api``: a keyword)."""
    n = lambda name: _name(name, api)  # noqa: E731 - the message's name of an option
    _choice(n("method"), o.method, METHODS)
    if o.chunking is not None:
        _choice(n("chunking"), o.chunking, ("class", "mixed"))
    _positive(n("tol"), o.tol)
    _choice(n("lca_storage"), o.lca_storage, STORAGES)
    _choice(n("lca_compression"), o.lca_compression, COMPRESSIONS)
    try:
        o.row_schedule()
    except ScheduleError as e:
        raise ConfigError(str(e)) from None
    _chunks(o, n)
    v = o.lca_stride
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(f"{n('lca_stride')} must be a positive integer, got {v}")
    if not (isinstance(o.rtol, int | float) and math.isfinite(o.rtol) and o.rtol >= 0):
        raise ConfigError(f"{n('rtol')} must be a number >= 0, got {o.rtol}")
    if o.rtol > 0 and o.method != "adaptive":
        raise ConfigError(f"{n('rtol')} only applies to {n('method')} adaptive (got "
                          f"{n('method')} {o.method}); rk4 and first_order do not refine")
    for name in ("lca_error_every", "counterfactual_every", "full_loss_every", "lca_every"):
        v, low = getattr(o, name), 1 if name == "lca_every" else 0
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{n(name)} must be an integer >= {low}, got {v}")
    if o.lca_data is not None:
        from compute.lca.subset import subset_size

        try:
            subset_size(o.lca_data, 10**15)  # the syntax; the size is checked against N later
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if o.lca_data_resample and o.lca_data is None:
        raise ConfigError(f"{n('lca_data_resample')} needs {n('lca_data')} N|fraction (the "
                          "subset size)")
    v = o.max_halvings
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 16:
        raise ConfigError(f"{n('max_halvings')} must be in 0..16, got {v}")
    _per_example(o, n)


def _per_example(o: LCAOptions, n) -> None:
    """per_example: None, "all" or a positive K; not with resampled subsets or compile."""
    v = o.per_example
    if v is None:
        return
    if v != "all" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ConfigError(f"{n('per_example')} must be 'all' or a positive integer, got {v!r}")
    if o.lca_data_resample:
        raise ConfigError(f"{n('per_example')} needs a fixed allocated set: with "
                          f"{n('lca_data_resample')} an example position means another "
                          "example every iteration")
    if o.compile:
        raise ConfigError(f"{n('per_example')} cannot be combined with {n('compile')}: its "
                          "hooks need the eager forward pass")


def _chunks(o: LCAOptions, n) -> None:
    """chunk_size (a positive integer or auto) and bn_group (whole groups per chunk)."""
    c, g = o.chunk_size, o.bn_group
    if c != "auto" and (isinstance(c, bool) or not isinstance(c, int) or c <= 0):
        raise ConfigError(f"{n('chunk_size')} must be a positive integer or 'auto', got {c!r}")
    if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g <= 0):
        raise ConfigError(f"{n('bn_group')} must be a positive integer, got {g!r}")
    if g is not None and c != "auto" and c % g:
        raise ConfigError(f"{n('chunk_size')} {c} must be a whole number of {n('bn_group')} "
                          f"{g} groups (or auto)")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")
