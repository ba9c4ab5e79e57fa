"""Convergence from training logs: when did a run first reach a target AP?

A training log (bench.train) has one line per evaluation with iteration, epoch, wall-clock,
device-hours and metrics. The target AP is given, or by default 90% of the best final AP among
the runs compared; a run that never reaches it is reported as such, never as a number.
"""

import json
from pathlib import Path

DEFAULT_TARGET_FRACTION = 0.9


def read_log(path: str | Path) -> list[dict]:
    """Evaluation lines of a run, in order; a missing file is an empty log."""
    path = Path(path)
    if not path.exists():
        return []
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from error
    return lines


def final_ap(lines: list[dict]) -> float | None:
    """AP of the last evaluation, or None for an empty log."""
    return lines[-1]["metrics"].get("AP") if lines else None


def default_target(final_aps: list[float | None]) -> float | None:
    """90% of the best final AP among runs (None if no run has one)."""
    known = [ap for ap in final_aps if ap is not None and ap >= 0]
    return DEFAULT_TARGET_FRACTION * max(known) if known else None


def reach(lines: list[dict], target_ap: float) -> dict | None:
    """The first evaluation with AP >= target: its iteration, epoch, wall-clock and device-hours;
    None if the run never reached the target."""
    for line in lines:
        ap = line["metrics"].get("AP")
        if ap is not None and ap >= target_ap:
            return {key: line[key] for key in ("iteration", "epoch", "wall_s", "device_hours")}
    return None
