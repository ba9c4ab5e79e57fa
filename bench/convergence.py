"""Convergence from training logs: when a run first reached a target AP, and whether it flattened.

A training log (bench.train) has one line per evaluation with iteration, epoch, wall-clock,
device-hours and metrics. The target AP is given, or by default 90% of the best configuration's
mean final AP (mean over its seeds). A target below TARGET_FLOOR is no target: with every run near
AP 0 "reaching" it would say nothing. A run that never reaches the target is censored, never a
number.
"""

DEFAULT_TARGET_FRACTION = 0.9
TARGET_FLOOR = 0.05  # AP (5 points): below this a "target" is reached by noise
PLATEAU_WINDOW = 0.2  # the plateau rule looks at the last 20% of a run's iterations
PLATEAU_GAIN = 0.005  # ... and calls the curve flat when AP gained less than 0.5 points there


def final_ap(lines: list[dict]) -> float | None:
    """AP of the last evaluation, or None for an empty log."""
    return lines[-1]["metrics"].get("AP") if lines else None


def default_target(configuration_means: list[float | None]) -> float | None:
    """90% of the best configuration's mean final AP; None when that is below TARGET_FLOOR."""
    known = [ap for ap in configuration_means if ap is not None and ap >= 0]
    if not known:
        return None
    target = DEFAULT_TARGET_FRACTION * max(known)
    return target if target >= TARGET_FLOOR else None


def reach(lines: list[dict], target_ap: float) -> dict | None:
    """The first evaluation with AP >= target: its iteration, epoch, wall-clock, device-hours and
    the number of evaluations run up to it; None if the run never reached the target."""
    for count, line in enumerate(lines, start=1):
        ap = line["metrics"].get("AP")
        if ap is not None and ap >= target_ap:
            found = {key: line[key] for key in ("iteration", "epoch", "wall_s", "device_hours")}
            return found | {"evaluations": count}
    return None


def plateau_gain(lines: list[dict], window: float = PLATEAU_WINDOW) -> float | None:
    """AP gained over the last ``window`` of the run's iterations: the last AP minus the best AP
    at or before iteration (1 - window) x the last iteration; None without such a point."""
    if not lines:
        return None
    last = lines[-1]
    cut = (1 - window) * last["iteration"]
    before = [line["metrics"].get("AP") for line in lines if line["iteration"] <= cut]
    before = [ap for ap in before if ap is not None]
    if not before or last["metrics"].get("AP") is None:
        return None
    return last["metrics"]["AP"] - max(before)


def plateaued(
    lines: list[dict], window: float = PLATEAU_WINDOW, gain: float = PLATEAU_GAIN
) -> bool:
    """The plateau rule: less than ``gain`` AP gained over the last ``window`` of iterations."""
    gained = plateau_gain(lines, window)
    return gained is not None and gained < gain
