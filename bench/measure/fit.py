"""Log-log fits: the exponent b of y ≈ a·x^b, e.g. time or memory against token count."""

import numpy as np


def loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares fit of log y = b log x + log a; returns (b, a). Needs >= 2 positive points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if keep.sum() < 2 or np.unique(x[keep]).size < 2:
        raise ValueError(
            f"loglog_slope: need at least 2 distinct positive points, got {int(keep.sum())}"
        )
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope), float(np.exp(intercept))
