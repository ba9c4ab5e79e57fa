"""The headline in words: a few sentences generated from its numbers and their verdicts.

Each sentence compares the methods with dense attention on one quantity and sorts them by the
verdict behind the numbers: FPS and memory by the noise rule (bench.report.noise), AP and
device-hours by the interval of the paired ratio, AP by that of the paired difference in points
(bench.stats.verdict), so a difference within the noise is said to be so, never called faster or
better.
"""

from bench.report.cells import number
from bench.report.headline import Headline
from bench.report.noise import MARK
from bench.report.quantity import signed_points
from bench.stats import NOT_DISTINGUISHABLE


def listed(items: list[tuple[str, str]]) -> str:
    """ "A (×1.13), B (×0.90)"."""
    return ", ".join(f"{m} ({shown})" for m, shown in items)


def as_ratio(quantity) -> str:
    return f"×{number(quantity.ratio.value)}"


def as_difference(quantity) -> str:
    """ "+27.5 ± 19.7 points, ×5.38": the paired difference that gives AP's verdict, then the ratio."""
    return f"{signed_points(quantity.difference)} points, {as_ratio(quantity)}"


def clauses(parts: list[tuple[str, list]]) -> str:
    """ "faster: A (×1.1); slower: B (×0.9)" for the non-empty parts."""
    return "; ".join(f"{word}: {listed(items)}" for word, items in parts if items)


def sorted_by_verdict(headline: Headline, key: str, words: dict[str, str], shown=as_ratio) -> list:
    """(word, [(method, shown(quantity))]) per verdict word, in the order of ``words``."""
    found = {word: [] for word in words.values()}
    for method, cells in headline.cells.items():
        quantity = cells[key]
        if method == headline.reference or quantity.ratio is None:
            continue
        if quantity.value is None or quantity.ratio.value is None:
            continue
        word = words.get(quantity.ratio_verdict)
        if word is not None:
            found[word].append((method, shown(quantity)))
    return list(found.items())


def speed(headline: Headline) -> str | None:
    parts = sorted_by_verdict(
        headline,
        "fps",
        {"faster": "faster", "slower": "slower", "within noise": "within the timing noise"},
    )
    if not any(items for _, items in parts):
        return None
    preset, device = headline.context["cost_preset"], headline.context["devices"]["inference"]
    return (
        f"Inference speed at the {preset} preset on {device}, against {headline.reference}: "
        f"{clauses(parts)}."
    )


def compute(headline: Headline) -> str | None:
    ratios = [
        (method, cells["encoder_gmacs"].ratio.value)
        for method, cells in headline.cells.items()
        if method != headline.reference
        and cells["encoder_gmacs"].ratio is not None
        and cells["encoder_gmacs"].ratio.value is not None
    ]
    if not ratios:
        return None
    low, high = min(ratios, key=lambda r: r[1]), max(ratios, key=lambda r: r[1])
    return (
        f"The encoders' multiply-accumulates range from ×{number(low[1])} ({low[0]}) to "
        f"×{number(high[1])} ({high[0]}) those of {headline.reference}; fewer MACs do not "
        "make a method faster by the same factor (see the crossover table)."
    )


def accuracy(headline: Headline) -> str | None:
    parts = sorted_by_verdict(
        headline,
        "AP",
        {"above dense": "higher", "below dense": "lower", NOT_DISTINGUISHABLE: NOT_DISTINGUISHABLE},
        as_difference,
    )
    if not any(items for _, items in parts):
        return None
    preset, data = headline.context["training"]
    return (
        f"AP ({preset} preset, {data} data, seeds paired) against {headline.reference}: "
        f"{clauses(parts)} (verdicts from the paired difference in AP points: "
        "not distinguishable when its 95% interval contains 0)."
    )


def device_hours(headline: Headline) -> str | None:
    parts = sorted_by_verdict(
        headline,
        "device_hours_b",
        {"below dense": "fewer", "above dense": "more", NOT_DISTINGUISHABLE: NOT_DISTINGUISHABLE},
    )
    if not any(items for _, items in parts):
        return None
    target = ", ".join(f"{100 * t:.1f}" for t in headline.context["target"])
    text = (
        f"Device-hours (b) to the target AP {target} % on {headline.context['step_device']}, "
        f"against {headline.reference}: {clauses(parts)}."
    )
    note = headline.cells[headline.reference]["device_hours_b"].note
    if note:
        text += f" {headline.reference} {note} seeds, so each ratio pairs only the seeds where both did."
    return text


def noisy(headline: Headline) -> str | None:
    flagged = [m for m, cells in headline.cells.items() if cells["time_exponent"].noisy]
    if not flagged:
        return None
    return (
        f"The time exponents of {', '.join(flagged)} come from noisy fits ({MARK}): read them as "
        "rough; the scaling section gives each fit's R² and spread."
    )


def sentences(headline: Headline) -> list[str]:
    """The sentences under the headline table; one saying why when there is no reference."""
    if headline.methods.empty:
        return []
    if headline.reference is None:
        return [
            "Dense attention, full (sdpa), is not in these results, so no method is compared "
            "with it; python -m bench.measure and python -m bench.ablate with --backends full "
            "add it."
        ]
    found = [speed(headline), compute(headline), accuracy(headline), device_hours(headline)]
    return [s for s in [*found, noisy(headline)] if s]
