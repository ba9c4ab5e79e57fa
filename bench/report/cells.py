"""How one table cell shows a measured value, a summary of several, or why there is none.

A missing or failed measurement is a dash with its reason ("— (OOM)", "— (not run)"), never a
zero or an empty cell. Repeated measurements of one thing (a case measured twice) show as
mean ± sd (n=…); values over seeds show as mean ± the half-width of their 95% interval
(bench.stats, ``estimate``), ratios as ×value [low, high] (``ratio``). A cell may hold several
lines ("\n"): the Markdown writes them with <br>, the HTML stacks them.
"""

import math

import pandas as pd

from bench.stats import Interval

DASH = "—"
NOT_RUN = "not run"
MAX_REASON = 60


def missing(reason: str) -> str:
    """The cell of something that has no value, with the reason."""
    return f"{DASH} ({reason})"


def number(value: float) -> str:
    """Three significant figures, without exponent for everyday magnitudes."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def plain(value) -> str:
    """A case parameter as written: 16 rather than 16.0 (pandas turns int columns with gaps into
    floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def percent(fraction: float) -> str:
    """An AP-like fraction in [0, 1] as a percentage with one decimal, as the poster prints it."""
    return f"{100 * fraction:.1f}"


def exponent(value: float) -> str:
    """A fitted log-log slope."""
    return f"{value:.2f}"


def short_reason(reason: str) -> str:
    """A failure reason short enough for a cell; the failures table keeps the whole message."""
    first_line = reason.strip().splitlines()[0] if reason.strip() else reason
    if len(first_line) <= MAX_REASON:
        return first_line
    return first_line[: MAX_REASON - 1].rstrip() + "…"


def failure_reason(status: str, value, reason: str | None) -> str | None:
    """Why a record has no usable value (its status, or its reason field), or None if it has one."""
    status = str(status)
    if status != "ok":
        return status
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return reason if isinstance(reason, str) and reason else "no value"
    return None


def summary(records: pd.DataFrame, fmt=number) -> str:
    """The cell for a group of records (columns ``value`` and ``failure``) of one quantity."""
    if records.empty:
        return missing(NOT_RUN)
    ok = records[records["failure"].isna()]
    failures = records["failure"].dropna()
    reasons = "; ".join(short_reason(r) for r in dict.fromkeys(failures))
    if ok.empty:
        return missing(reasons)
    values = ok["value"].astype(float)
    if len(values) == 1:
        text = fmt(values.iloc[0])
    else:
        text = f"{fmt(values.mean())} ± {fmt(values.std())} (n={len(values)})"
    if not failures.empty:
        text += f"; {len(failures)} failed: {reasons}"
    return text


def half_width(value: float, width: float, fmt=number) -> str:
    """The half-width of an interval; 0 where it is float rounding of an exact agreement."""
    return "0" if abs(width) <= 1e-9 * max(abs(value), 1e-300) else fmt(width)


def estimate(
    interval: Interval | None, fmt=number, missing_reason: str = "no usable runs", count=True
) -> str:
    """Mean ± half-width of the 95% interval (n=…); a single value says n=1. Without ``count``
    the n is left to another column."""
    if interval is None:
        return missing(missing_reason)
    if interval.low is None:
        return f"{fmt(interval.value)}" + (" (n=1)" if count else "")
    width = half_width(interval.value, interval.half_width, fmt)
    return f"{fmt(interval.value)} ± {width}" + (f" (n={interval.n})" if count else "")


def ratio(interval: Interval | None, missing_reason: str = "no pair") -> str:
    """A ratio with its interval: "×0.42 [0.31, 0.57]"; without an interval "×0.42"."""
    if interval is None:
        return missing(missing_reason)
    text = f"×{number(interval.value)}"
    if interval.low is not None:
        text += f" [{number(interval.low)}, {number(interval.high)}]"
    return text


def difference(interval: Interval | None, fmt=percent) -> str:
    """A paired difference with its interval, signed: "+1.9 ± 3.4 (n=3)"."""
    if interval is None:
        return missing("no paired seeds")
    sign = "+" if interval.value >= 0 else "−"
    text = f"{sign}{fmt(abs(interval.value))}"
    if interval.low is None:
        return text + " (n=1)"
    return f"{text} ± {half_width(interval.value, interval.half_width, fmt)} (n={interval.n})"
