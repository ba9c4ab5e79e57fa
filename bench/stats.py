"""Means, paired differences and ratios over seeds, each with a 95% interval.

The interval method is stated wherever a number is shown (``METHOD``): Student's t over seeds,
mean ± t_{0.975, n-1} · sd / √n, from scipy.stats. A difference between two configurations is
paired by seed (seed s means the same data order and the same initial shared weights in every
configuration, bench.engine and models.build_model), so the interval is over the per-seed
differences. A ratio (e.g. iterations to target, dense / deformable) gets a t interval on the log
scale, exponentiated (a geometric mean and its interval). An interval that contains 0 (a
difference) or 1 (a ratio) is "not distinguishable at this scale".

Censored runs: a run that never reached the target has no iterations-to-target. ``Censored``
keeps the reached values and the count; the mean is over the runs that reached and is always
shown with "reached in n of m", never as if every run had.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

LEVEL = 0.95
METHOD = "95% Student t interval over seeds"
NOT_DISTINGUISHABLE = "not distinguishable at this scale"


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean (or ratio) with its 95% interval; low/high are None when n < 2."""

    value: float
    low: float | None
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2

    def contains(self, x: float) -> bool | None:
        return None if self.low is None else self.low <= x <= self.high


def _clean(values) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def mean_interval(values) -> Interval | None:
    """Mean ± Student t interval of the values (None values and NaN dropped); None if empty."""
    x = _clean(values)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, None, None, 1)
    if float(x.std(ddof=1)) == 0.0:
        return Interval(mean, mean, mean, int(x.size))
    low, high = stats.t.interval(LEVEL, x.size - 1, loc=mean, scale=stats.sem(x))
    return Interval(mean, float(low), float(high), int(x.size))


def paired_difference(a: dict, b: dict) -> Interval | None:
    """Mean of b[s] - a[s] over the seeds s both have, with its t interval (None if none)."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    return mean_interval([b[s] - a[s] for s in seeds])


def ratio_interval(numerator: list[float], denominator: list[float]) -> Interval | None:
    """Geometric-mean ratio numerator / denominator with a t interval on the log scale.

    Paired when both lists have the same length and come from the same seeds in order (pass
    them so); otherwise the log-ratio's variance adds both samples' (Welch, unpaired)."""
    num, den = _clean(numerator), _clean(denominator)
    if num.size == 0 or den.size == 0 or (num <= 0).any() or (den <= 0).any():
        return None
    if num.size == den.size:
        logs = mean_interval(np.log(num) - np.log(den))
        return Interval(
            math.exp(logs.value),
            None if logs.low is None else math.exp(logs.low),
            None if logs.high is None else math.exp(logs.high),
            logs.n,
        )
    ln, ld = np.log(num), np.log(den)
    centre = float(ln.mean() - ld.mean())
    if ln.size < 2 or ld.size < 2:
        return Interval(math.exp(centre), None, None, min(ln.size, ld.size))
    vn, vd = ln.var(ddof=1) / ln.size, ld.var(ddof=1) / ld.size
    if vn + vd == 0:
        return Interval(math.exp(centre), math.exp(centre), math.exp(centre), min(ln.size, ld.size))
    df = (vn + vd) ** 2 / (vn**2 / (ln.size - 1) + vd**2 / (ld.size - 1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * math.sqrt(vn + vd)
    return Interval(
        math.exp(centre), math.exp(centre - half), math.exp(centre + half), min(ln.size, ld.size)
    )


@dataclasses.dataclass(frozen=True)
class Censored:
    """Values of the runs that reached a target, out of ``runs`` runs."""

    reached: tuple[float, ...]
    runs: int

    @property
    def interval(self) -> Interval | None:
        return mean_interval(self.reached)

    @property
    def label(self) -> str:
        return f"reached in {len(self.reached)} of {self.runs}"


def verdict(interval: Interval | None, null: float = 0.0) -> str:
    """ "not distinguishable at this scale" when the interval contains ``null`` (or is
    unknown), else which side it lies on."""
    if interval is None or interval.low is None or interval.contains(null):
        return NOT_DISTINGUISHABLE
    return "higher" if interval.low > null else "lower"
