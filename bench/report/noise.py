"""When a measurement or a fit is too noisy to read as clean, and when two measurements differ.

- The spread of a timed point is the IQR of its repeats over their median (the record's
  ``iqr_s`` over its median, bench.measure.cases._summary).
- A point is noisy when its spread exceeds NOISY_SPREAD.
- A fit is noisy when its R² is below MIN_R2, when any of its points is noisy, or when it rests on
  fewer than MIN_POINTS points (a line through two points has R² = 1 by construction).
- Two measurements differ only when |log(B/A)| exceeds the sum of both spreads and MIN_CHANGE;
  otherwise the difference is within the noise. The A/B comparison (bench.report.compare) and the
  headline's sentences use this rule.

A noisy fit or point is marked where it is shown, never printed as if clean.
"""

import math

NOISY_SPREAD = 0.25
MIN_R2 = 0.95
MIN_POINTS = 3
MIN_CHANGE = 0.05
MARK = "⚠"
FIT_RULE = (
    f"{MARK} marks a noisy fit: R² < {MIN_R2}, fewer than {MIN_POINTS} points, or a point whose "
    f"timing repeats spread by more than {NOISY_SPREAD:.0%} of their median (IQR / median)"
)
POINT_RULE = f"{MARK} marks a noisy point: the IQR of its timing repeats > {NOISY_SPREAD:.0%} of their median"
CHANGE_RULE = (
    "B differs from A only when |log(B/A)| exceeds both the sum of the two sides' spreads "
    f"(IQR / median of their timing repeats; 0 for a quantity measured once) and {MIN_CHANGE:.0%}"
)


def spread(iqr, median) -> float | None:
    """IQR / median of a timed point, or None when it has no repeats recorded."""
    try:
        iqr, median = float(iqr), float(median)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(iqr) or not math.isfinite(median) or median <= 0:
        return None
    return iqr / median


def point_noisy(value: float | None) -> bool:
    """A point whose spread exceeds NOISY_SPREAD."""
    return value is not None and value > NOISY_SPREAD


def fit_problems(r2: float, spreads, points: int) -> list[str]:
    """Why a fit is noisy, in words; empty when it is clean."""
    problems = []
    if points < MIN_POINTS:
        problems.append(f"{points} points")
    if r2 < MIN_R2:
        problems.append(f"R² {r2:.2f}")
    known = [s for s in spreads if s is not None]
    if known and max(known) > NOISY_SPREAD:
        problems.append(f"spread {max(known):.2f}")
    return problems


def changed(a: float, b: float, spread_a: float | None, spread_b: float | None) -> bool:
    """Whether B differs from A by more than the noise (see the module docstring)."""
    if a <= 0 or b <= 0:
        return a != b
    margin = max(_or_zero(spread_a) + _or_zero(spread_b), MIN_CHANGE)
    return abs(math.log(b / a)) > margin


def _or_zero(value: float | None) -> float:
    """A spread, or 0 for a quantity measured once (None, NaN)."""
    return 0.0 if value is None or not math.isfinite(value) else float(value)
