"""A number the headline shows: value, interval, count, unit, where it comes from, and its ratio to
the dense reference. ``summary.json`` holds these as numbers; tables show them through ``text``.
"""

import dataclasses

from bench.report.cells import half_width, missing, number, ratio
from bench.report.noise import MARK
from bench.stats import NOT_DISTINGUISHABLE, Interval, verdict

SHORT_NOT_DISTINGUISHABLE = "n.d."


def signed_points(d: Interval) -> str:
    """A paired difference in points: "+27.5 ± 19.7" ("+27.5" without an interval)."""
    return f"{d.value:+.1f}" + (f" ± {d.half_width:.1f}" if d.low is not None else "")


@dataclasses.dataclass
class Quantity:
    """One cell: ``value`` with its 95% interval [low, high] over ``n`` (None when n < 2)."""

    value: float | None
    unit: str
    source: str  # where the number comes from, in words (preset, device, seeds, method)
    low: float | None = None
    high: float | None = None
    n: int = 0
    missing: str = ""  # why there is no value
    noisy: str = ""  # why the value is noisy (bench.report.noise); empty when clean
    note: str = ""  # e.g. "reached in 2 of 3"
    detail: str = ""  # a line of its own under the value, e.g. "H×W 0.98"
    ratio: "Quantity | None" = None  # to the dense reference (unit "×")
    ratio_verdict: str = ""  # bench.stats.verdict of the ratio (or difference), or the noise rule's
    difference: Interval | None = None  # paired difference to the reference (AP, in points)
    spread: float | None = None  # IQR / median of a timed value's repeats (bench.report.noise)

    @classmethod
    def of(cls, interval: Interval | None, unit: str, source: str, reason: str = "no value"):
        if interval is None:
            return cls(None, unit, source, missing=reason)
        return cls(interval.value, unit, source, interval.low, interval.high, interval.n)

    @property
    def interval(self) -> Interval | None:
        if self.value is None:
            return None
        return Interval(self.value, self.low, self.high, self.n)

    def text(self, fmt=number) -> str:
        """e.g. "34.3 ± 1.2 (n=3)", "0.62 ⚠ noisy (spread 0.31)", "— (OOM)"."""
        if self.value is None:
            return missing(self.missing or "no value")
        text = fmt(self.value)
        if self.low is not None and self.n > 1:
            text += f" ± {half_width(self.value, (self.high - self.low) / 2, fmt)} (n={self.n})"
        if self.note:
            text += f", {self.note}"
        if self.noisy:
            text += f" {MARK} noisy ({self.noisy})"
        if self.detail:
            text += f"\n{self.detail}"
        return text

    def ratio_text(self, short: bool = False) -> str:
        """ "×0.42 [0.31, 0.57] (below dense)"; with ``short`` the verdict "not distinguishable at
        this scale" reads "n.d."; empty when there is no value to compare."""
        if self.ratio is None or self.value is None:
            return ""
        if self.ratio.value is None:
            return f"× dense: {missing(self.ratio.missing or 'no pair')}"
        text = ratio(self.ratio.interval)
        if self.difference is not None:
            text += f"\nΔ {signed_points(self.difference)}"
        if self.ratio_verdict:
            shown = self.ratio_verdict
            if short and shown == NOT_DISTINGUISHABLE:
                shown = SHORT_NOT_DISTINGUISHABLE
            text += f" ({shown})"
        return text

    def to_json(self) -> dict:
        data = {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "unit": self.unit,
            "source": self.source,
        }
        if self.missing:
            data["missing"] = self.missing
        if self.noisy:
            data["noisy"] = self.noisy
        if self.note:
            data["note"] = self.note
        if self.detail:
            data["detail"] = self.detail
        if self.spread is not None:
            data["spread"] = self.spread
        if self.ratio is not None:
            data["ratio_to_dense"] = self.ratio.to_json()
            data["ratio_verdict"] = self.ratio_verdict
        if self.difference is not None:
            d = self.difference
            data["difference_to_dense"] = {"value": d.value, "low": d.low, "high": d.high, "n": d.n}
        return data


def interval_verdict(interval: Interval | None) -> str:
    """bench.stats.verdict of a ratio against 1, in words for a ratio to dense."""
    text = verdict(interval, null=1.0)
    return {"higher": "above dense", "lower": "below dense"}.get(text, text)
