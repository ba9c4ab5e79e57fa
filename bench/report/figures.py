"""The report's plots, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function draws one figure from the results and saves it as a PNG, or, when the results hold
nothing to draw, writes no file and says in one sentence what is missing and which command
produces it. Colours follow the method, so one method has the same colour in every figure.

- ``curves``: AP against device-hours of the runs of one kind (the convergence study, the
  ablation): per configuration the mean over seeds at each evaluation with its 95% t interval
  as a band; device-hours (b) on the headline step device where every configuration has step
  times there, else the runs' wall clock (a);
- ``ap_vs_option``: AP against a numeric option of an ablation family (K), one line per family,
  dots per seed, dense attention's mean as a dashed line with its band;
- ``scaling``: one encoder layer's time (with the upper-half fit) or memory (with the quadratic
  fit) against tokens, log-log.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from bench.report import devicehours, runs
from bench.report.ablation import ap_by_seed, families, option_title
from bench.report.cells import percent
from bench.report.headline import headline_device
from bench.report.methods import methods_of, reference_label
from bench.report.provenance import short_device
from bench.report.scaling import MIB, UPPER_HALF, select, sweeps
from bench.stats import mean_interval

SIZE = (6.4, 4.0)
DPI = 110
SWEEP_MARKERS = {"T": "o", "HW": "s"}
OWN_FIGURES = ("curves_*.png", "ap_vs_*.png", "time_vs_tokens.png", "memory_vs_tokens.png")


@dataclasses.dataclass
class FigureResult:
    key: str
    title: str
    caption: str
    path: Path | None  # None: not drawn
    missing: str = ""  # why it was not drawn

    @property
    def filename(self) -> str:
        return f"figures/{self.path.name}" if self.path else ""


def method_colours(results) -> dict[str, str]:
    """One colour per method across all figures (matplotlib's tab10 cycle, in report order)."""
    frames = [results.measurements, results.training]
    methods = methods_of(*[f for f in frames if not f.empty])["method"].tolist()
    return {method: f"C{i % 10}" for i, method in enumerate(methods)}


def new_figure() -> tuple[Figure, object]:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def band(axes, x, values: list[list[float]], colour, label: str) -> None:
    """Mean line and 95% t band of several seeds' values at each x."""
    intervals = [mean_interval(v) for v in values]
    mean = [i.value for i in intervals]
    axes.plot(x, mean, marker=".", color=colour, label=label)
    low = [i.low if i.low is not None else i.value for i in intervals]
    high = [i.high if i.high is not None else i.value for i in intervals]
    axes.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)


def curve_points(results, table: pd.DataFrame, device: str | None) -> pd.DataFrame:
    """Log lines of the usable runs with x = device-hours (b) on ``device`` (or (a))."""
    steps = devicehours.step_times(results.measurements)
    logs = results.logs.merge(
        runs.usable(table)[["run", "method", "preset", "seed", "val_videos"]], on="run"
    )
    if device is None:
        return logs.assign(x=logs["device_hours"])
    x = []
    for line in logs.itertuples():
        step = devicehours.step_of(steps, line.method, line.preset, device)
        x.append(devicehours.hours(line.iteration, line.evaluation, line.val_videos, step))
    return logs.assign(x=x)


def curves(results, kind: str, directory: Path, colours: dict) -> FigureResult:
    key, title = (
        f"curves-{kind}".replace("_", "-"),
        {
            "study": "Convergence study: AP against device-hours",
            "ablation": "Ablation runs: AP against device-hours",
        }[kind],
    )
    table = runs.run_table(results.of_kind(kind))
    command = {"study": "python -m bench.study convergence", "ablation": "python -m bench.ablate"}
    if table.empty or results.logs.empty or results.logs["run"].isin(table["run"]).sum() == 0:
        missing = f"No {kind} runs with logs (runs/*/log.jsonl): {command[kind]} produces them."
        return FigureResult(key, title, "", None, missing)
    preset = table["preset"].iloc[0]
    step = results.measurements[results.measurements["kind"] == "step"]
    device = headline_device(step[(step["preset"] == preset) & (step["metric"] == "step_time")])
    points = curve_points(results, table, device)
    if device is not None and points["x"].isna().any():
        device, points = None, curve_points(results, table, None)
    axis = (
        f"device-hours (b) on {short_device(device)}" if device else "device-hours (a), wall clock"
    )
    figure, axes = new_figure()
    for method in methods_of(table)["method"]:
        mine = points[points["method"] == method].dropna(subset=["AP", "x"])
        if mine.empty:
            continue
        grouped = mine.groupby("iteration")
        x = grouped["x"].mean().to_numpy()
        values = [[100 * v for v in g["AP"]] for _, g in grouped]
        band(axes, x, values, colours.get(method), f"{method} (n={mine['seed'].nunique()})")
    targets = sorted(set(table["target_AP"].dropna()))
    for target in targets:
        axes.axhline(100 * target, color="0.3", linestyle="--", linewidth=1)
    axes.set_xlabel(axis)
    axes.set_ylabel("AP (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    caption = (
        f"Validation AP (%) at each evaluation against {axis}: mean over seeds (line) with its "
        "95% Student t interval (band), runs aligned by iteration; runs cut by the wall-clock "
        "cap or failed are left out"
    )
    if targets:
        caption += "; dashed: the target AP " + ", ".join(percent(t) for t in targets) + " %"
    path = save(figure, directory / f"curves_{kind}.png")
    return FigureResult(key, title, caption + ".", path)


def ap_vs_option(results, directory: Path, colours: dict) -> list[FigureResult]:
    """One figure per (backend, numeric option) with families in the ablation's main group."""
    table = runs.run_table(results.ablation)
    grouped = runs.groups(table)
    found = families(grouped[0][1]) if grouped else []
    numeric = [f for f in found if all(isinstance(v, int | float) for v, _ in f.members)]
    if not numeric:
        missing = (
            "No ablation over a numeric option (e.g. K): python -m bench.ablate --k 16 32 "
            "produces one."
        )
        return [FigureResult("ap-vs-option", "AP against K", "", None, missing)]
    group = grouped[0][1]
    reference = reference_label(methods_of(group))
    figures = []
    for backend, option in dict.fromkeys((f.backend, f.option) for f in numeric):
        figure, axes = new_figure()
        values = set()
        for family in (f for f in numeric if (f.backend, f.option) == (backend, option)):
            xs, means = [], []
            colour = colours.get(family.members[-1][1])  # one colour per family
            for value, method in family.members:
                aps = list(ap_by_seed(group, method).values())
                if aps:
                    xs.append(value)
                    means.append(float(np.mean(aps)))
                    axes.scatter([value] * len(aps), aps, s=12, alpha=0.6, color=colour)
            values.update(xs)
            axes.plot(xs, means, marker="o", color=colour, label=f"{backend} {family.setting}")
        if reference is not None:
            dense = mean_interval(ap_by_seed(group, reference).values())
            if dense is not None:
                axes.axhline(dense.value, color="0.3", linestyle="--", label=f"{reference} (mean)")
                if dense.low is not None:
                    axes.axhspan(dense.low, dense.high, color="0.3", alpha=0.1)
        values = sorted(values)
        if values and all(v > 0 for v in values):
            axes.set_xscale("log", base=2)
        axes.set_xticks(values, [str(v) for v in values])
        axes.set_xlabel(option_title(backend, option))
        axes.set_ylabel("AP (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        name = f"ap_vs_{backend}_{option}.png"
        caption = (
            f"Final validation AP (%) against {option_title(backend, option)}: line, the mean "
            "over seeds; dots, each seed; dashed, dense attention's mean with its 95% band."
        )
        path = save(figure, directory / name)
        figures.append(
            FigureResult(
                f"ap-vs-{backend}-{option}".replace("_", "-"),
                f"AP against {option_title(backend, option)}",
                caption,
                path,
            )  # fmt: skip
        )
    return figures


def scaling(results, directory: Path, colours: dict, metric: str) -> FigureResult:
    """Time or memory of one encoder layer against tokens, log-log, with its fit."""
    name, unit, filename = {
        "time": ("time", "s", "time_vs_tokens.png"),
        "peak_memory": ("peak memory", "MiB", "memory_vs_tokens.png"),
    }[metric]
    key = f"scaling-{metric.replace('_', '-')}"
    title = f"Scaling: {name} against tokens"
    found = [s for s in sweeps(results) if not s.ok(metric).empty]
    if not found:
        missing = (
            f"No usable scaling measurements of {name}: python -m bench.measure --metrics "
            "scaling produces them."
        )
        return FigureResult(key, title, "", None, missing)
    figure, axes = new_figure()
    styles = ["-", "--", ":", "-."]
    devices = list(dict.fromkeys(s.device_name for s in found))
    for sweep in found:
        colour = colours.get(sweep.method)
        linestyle = styles[devices.index(sweep.device_name) % len(styles)]
        ok = sweep.ok(metric)
        for kind, points in ok.groupby("sweep"):
            axes.scatter(points["tokens"], points["value"], color=colour, s=14,
                         marker=SWEEP_MARKERS.get(kind, "^"))  # fmt: skip
        label = f"{sweep.method} · {short_device(sweep.device_name)}"
        if metric == "time":
            fit = sweep.time_fit(UPPER_HALF).fit
            if fit is not None:
                upper = select(ok, UPPER_HALF)["tokens"]
                x = np.geomspace(upper.min(), upper.max(), 20)
                label += f": b = {fit.slope:.2f}"
                axes.plot(
                    x, fit.scale * x**fit.slope, color=colour, linestyle=linestyle, label=label
                )
                continue
        else:
            fit = sweep.memory_fit()
            if fit is not None:
                x = np.geomspace(ok["tokens"].min(), ok["tokens"].max(), 40)
                y = (fit.constant + fit.linear * x + fit.quadratic * x * x) / MIB
                axes.plot(x, y, color=colour, linestyle=linestyle, label=label)
                continue
        axes.plot([], [], color=colour, linestyle=linestyle, label=label + " (no fit)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("tokens (T·H·W)")
    axes.set_ylabel(f"{name} ({unit})")
    axes.grid(alpha=0.3, which="both")
    handles, labels = axes.get_legend_handles_labels()
    for kind, text in (("T", "T sweep"), ("HW", "H×W sweep")):
        handles.append(Line2D([], [], color="0.4", marker=SWEEP_MARKERS[kind], linestyle=""))
        labels.append(text)
    axes.legend(handles, labels, fontsize=6, ncol=2)
    fitted = "the upper-half log-log fit" if metric == "time" else "the fit a + b·S + c·S²"
    caption = (
        f"One encoder layer's {name} against tokens (T·H·W), log-log; circles: T sweep, "
        f"squares: H×W sweep; lines: {fitted} (line style per device)."
    )
    path = save(figure, directory / filename)
    return FigureResult(key, title, caption, path)


def draw_figures(results, out_dir: Path) -> dict[str, list[FigureResult]]:
    """Every figure into out_dir/figures, by the section it belongs to; PNGs of figures not drawn
    this time are removed."""
    directory = out_dir / "figures"
    colours = method_colours(results)
    figures = {
        "accuracy": [curves(results, "ablation", directory, colours)],
        "ablation": ap_vs_option(results, directory, colours),
        "study": [curves(results, "study", directory, colours)],
        "scaling": [
            scaling(results, directory, colours, "time"),
            scaling(results, directory, colours, "peak_memory"),
        ],
    }
    drawn = {f.path.name for group in figures.values() for f in group if f.path}
    for pattern in OWN_FIGURES:
        for stale in directory.glob(pattern):
            if stale.name not in drawn:
                stale.unlink()
    return figures
