"""Readable axis ticks: 1-2-5 values, one number format per axis.

Plotly's automatic ticks are fine on most linear axes (the theme asks for ``1e-6`` exponents
instead of SI prefixes), but two cases need explicit ticks:

* a log axis spanning less than a few decades is labelled with bare leading digits
  ("2, 1, 9, 8 … 2"), and one spanning many decades mixes SI prefixes ("10B", "1T", "f", "μ")
  with a power-of-ten label below 1e-15;
* an overlaying axis (a loss on the right of a percentage) is synchronised to the left axis's
  grid and gets ticks such as 0.104, 0.589 and a negative loss.

:func:`linear_ticks` and :func:`log_ticks` return tick values; :func:`tick_labels` formats all
of an axis's values the same way (plain decimals, or ``1e-6`` style for all of them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_STEPS = (1.0, 2.0, 5.0, 10.0)


def nice_step(span: float, n: int = 5) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``n`` intervals."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    return min((s * mag for s in _STEPS), key=lambda st: abs(math.log(span / st / n)))


def linear_ticks(lo: float, hi: float, n: int = 5) -> tuple[list[float], list[float]]:
    """Ticks at multiples of a 1-2-5 step and the axis range that ends on ticks.

    Returns:
        ``(ticks, [range_lo, range_hi])``; the range is ``[lo, hi]`` widened to whole steps.
    """
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = nice_step(hi - lo, n)
    k0, k1 = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [_clean(k * step) for k in range(k0, k1 + 1)]
    return ticks, [ticks[0], ticks[-1]]


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Tick values for a log axis over ``[lo, hi]`` (both > 0), always at least two.

    1-2-5 per decade when that gives 3 to ``max_ticks`` ticks; one per decade (or every k-th
    decade, k a divisor-friendly step) over wide ranges; 1…9 per decade over narrow ones.
    """
    lo, hi = float(lo), float(hi)
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return [1.0, 10.0]
    lo, hi = min(lo, hi), max(lo, hi)
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))

    def within(mants: Sequence[float], every: int = 1) -> list[float]:
        vals = (_clean(m * 10.0 ** e) for e in range(e0, e1 + 1) if e % every == 0
                for m in mants)
        return [v for v in vals if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]

    ticks = within((1, 2, 5))
    if 3 <= len(ticks) <= max_ticks:
        return ticks
    if len(ticks) > max_ticks:  # wide: whole decades, every k-th one if still too many
        for k in (1, 2, 3, 4, 5, 10, 20, 50, 100):
            ticks = within((1,), k)
            if len(ticks) <= max_ticks:
                return ticks if len(ticks) >= 2 else within((1, 2, 5))[:: max(1, k)]
        return ticks
    ticks = within(range(1, 10))  # narrow: less than about a decade
    if len(ticks) > max_ticks:
        ticks = within((1, 2, 3, 5, 7))
    if len(ticks) >= 2:
        return ticks
    return [_clean(float(f"{lo:.2g}")), _clean(float(f"{hi:.2g}"))]


def _clean(v: float) -> float:
    """Round away binary noise (0.30000000000000004 -> 0.3)."""
    return 0.0 if v == 0 else float(f"{v:.12g}")


def uses_exponent(values: Sequence[float]) -> bool:
    """Whether an axis with these ticks should be labelled in ``1e-6`` style."""
    nz = [abs(v) for v in values if v]
    return bool(nz) and (min(nz) < 1e-3 or max(nz) >= 1e5)


def tick_labels(values: Sequence[float]) -> list[str]:
    """One format for all ticks of an axis: plain decimals, or ``2e-6`` style for every one."""
    if uses_exponent(values):
        out = []
        for v in values:
            if v == 0:
                out.append("0")
                continue
            e = math.floor(math.log10(abs(v)) + 1e-12)
            m = float(f"{v / 10.0 ** e:.3g}")
            out.append(f"{m:g}e{e}")
        return out
    return [f"{v:.10g}" for v in values]


def log_axis(lo: float, hi: float, max_ticks: int = 8) -> dict:
    """Plotly axis settings for a log axis showing ``[lo, hi]``: type, range, ticks, labels."""
    ticks = log_ticks(lo, hi, max_ticks)
    pad = 0.02 * max(math.log10(hi / lo), 0.1) if lo > 0 and hi > lo else 0.1
    rng = [math.log10(lo) - pad, math.log10(hi) + pad] if lo > 0 and hi > 0 else None
    return {"type": "log", "range": rng, "tickmode": "array", "tickvals": ticks,
            "ticktext": tick_labels(ticks)}


def linear_axis(lo: float, hi: float, n: int = 5, *, nonnegative: bool = False) -> dict:
    """Plotly settings for a linear axis over ``[lo, hi]`` with 1-2-5 ticks (from 0 if
    ``nonnegative``)."""
    if nonnegative:
        lo, hi = 0.0, max(hi, 0.0)
    ticks, rng = linear_ticks(lo, hi, n)
    return {"range": rng, "tickmode": "array", "tickvals": ticks,
            "ticktext": tick_labels(ticks)}


def positive_range(*arrays: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite positive values of ``arrays``; None if there are none."""
    vals = [np.asarray(a, np.float64).ravel() for a in arrays if a is not None]
    vals = [v[np.isfinite(v) & (v > 0)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    return float(min(v.min() for v in vals)), float(max(v.max() for v in vals))


def finite_range(*arrays: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values of ``arrays``; None if there are none."""
    vals = [np.asarray(a, np.float64).ravel() for a in arrays if a is not None]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    return float(min(v.min() for v in vals)), float(max(v.max() for v in vals))
