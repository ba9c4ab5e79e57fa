"""Least-squares fits of measured points, each with its coefficient of determination R².

- ``loglog_fit``: y ≈ a·x^b on log-log axes (time or memory against token count); ``loglog_slope``
  returns only (b, a).
- ``quadratic_fit``: y ≈ a + b·x + c·x² on linear axes (peak memory against token count: a constant,
  bytes per token and bytes per token²).

R² = 1 − SS_res / SS_tot, computed on the axes the fit is made on (log y for ``loglog_fit``); it is
1 for a fit through as many points as it has coefficients, so a caller judging a fit should also
look at the number of points.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PowerFit:
    """y ≈ scale · x^slope over ``points`` points."""

    slope: float
    scale: float
    r2: float
    points: int


@dataclasses.dataclass(frozen=True)
class QuadraticFit:
    """y ≈ constant + linear · x + quadratic · x² over ``points`` points."""

    constant: float
    linear: float
    quadratic: float
    r2: float
    points: int


def r_squared(y: np.ndarray, predicted: np.ndarray) -> float:
    """1 − SS_res / SS_tot; 1.0 when the points are all equal and fitted exactly."""
    residual = float(np.sum((y - predicted) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def _usable(x, y, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if positive:
        keep &= (x > 0) & (y > 0)
    return x[keep], y[keep]


def loglog_fit(x, y) -> PowerFit:
    """Least-squares fit of log y = b log x + log a. Needs >= 2 distinct positive x."""
    x, y = _usable(x, y, positive=True)
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError(f"loglog_fit: need at least 2 distinct positive points, got {x.size}")
    log_x, log_y = np.log(x), np.log(y)
    slope, intercept = np.polyfit(log_x, log_y, 1)
    r2 = r_squared(log_y, slope * log_x + intercept)
    return PowerFit(float(slope), float(np.exp(intercept)), r2, int(x.size))


def loglog_slope(x, y) -> tuple[float, float]:
    """(b, a) of y ≈ a·x^b by ``loglog_fit``. Needs >= 2 distinct positive points."""
    fit = loglog_fit(x, y)
    return fit.slope, fit.scale


def quadratic_fit(x, y) -> QuadraticFit:
    """Least-squares fit of y = a + b·x + c·x². Needs >= 3 distinct finite x.

    The columns are scaled by the largest |x| before solving, so token counts of 10⁵ (x² ~ 10¹⁰)
    stay well conditioned."""
    x, y = _usable(x, y, positive=False)
    if np.unique(x).size < 3:
        raise ValueError(f"quadratic_fit: need at least 3 distinct points, got {np.unique(x).size}")
    unit = float(np.max(np.abs(x)))
    u = x / unit
    design = np.stack([np.ones_like(u), u, u * u], axis=1)
    (a, b, c), *_ = np.linalg.lstsq(design, y, rcond=None)
    r2 = r_squared(y, design @ np.array([a, b, c]))
    return QuadraticFit(float(a), float(b / unit), float(c / unit**2), r2, int(x.size))
