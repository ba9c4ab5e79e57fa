"""The report's plots, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function draws one figure from the results and saves it as a PNG, or, when the results hold
nothing to draw, writes no file and says in one sentence what is missing. Colours follow the
method, so one method has the same colour in every figure.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from bench.report.ablation import mode_label
from bench.report.cells import percent
from bench.report.methods import methods_of
from bench.report.scaling import SWEEPS, series_of

SIZE = (6.4, 4.0)
DPI = 110
SWEEP_MARKERS = {"T": "o", "HW": "s"}
RUN_LINESTYLES = ["-", ":", "-."]  # runs of one method: one colour; dashed is the target


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
    frames = [results.measurements, results.ablation]
    methods = methods_of(*[f for f in frames if not f.empty])["method"].tolist()
    palette = [f"C{i % 10}" for i in range(len(methods))]
    return dict(zip(methods, palette, strict=True))


def new_figure() -> tuple[Figure, object]:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def run_methods(results) -> dict[str, str]:
    """Run name -> method label, from the ablation records."""
    named = results.ablation.dropna(subset=["run"]).drop_duplicates("run")
    return dict(zip(named["run"], named["method"], strict=True))


def device_hours_label(logs: pd.DataFrame) -> str:
    devices = logs[["device_name", "n_devices"]].drop_duplicates().dropna()
    if len(devices) == 1:
        name, count = devices.iloc[0]
        return f"device-hours ({name} × {int(count)})"
    return "device-hours (wall-clock × devices; runs on different devices)"


def convergence(results, directory: Path, colours: dict) -> FigureResult:
    """AP against device-hours, one line per run; the target AP as a dashed line."""
    title = "Convergence: AP vs device-hours"
    caption = (
        "AP on the validation split (%) at each periodic evaluation against device-hours "
        "(wall-clock × devices, evaluation included), one line per training run"
    )
    logs = results.logs.dropna(subset=["device_hours", "AP"])
    if logs.empty:
        missing = f"No convergence logs ({results.directory}/runs/*/log.jsonl) with AP to plot."
        return FigureResult("convergence", title, caption, None, missing)
    figure, axes = new_figure()
    methods = run_methods(results)
    runs_so_far: dict[str | None, int] = {}
    for run, points in logs.groupby("run", sort=True):
        method = methods.get(run)
        repeat = runs_so_far[method] = runs_so_far.get(method, -1) + 1
        points = points.sort_values("device_hours")
        axes.plot(
            points["device_hours"],
            100 * points["AP"],
            marker=".",
            color=colours.get(method),
            linestyle=RUN_LINESTYLES[repeat % len(RUN_LINESTYLES)],
            label=f"{run} ({method})" if method else run,
            alpha=0.9,
        )
    targets = sorted(set(results.ablation["target_AP"].dropna()))
    for target in targets:
        axes.axhline(100 * target, color="0.3", linestyle="--", linewidth=1)
        axes.annotate(
            f"target AP {percent(target)}",
            (0, 100 * target),
            xycoords=("axes fraction", "data"),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=8,
            color="0.3",
        )
    axes.set_xlabel(device_hours_label(logs))
    axes.set_ylabel("AP (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    if targets:
        caption += "; dashed: the target AP " + ", ".join(percent(t) for t in targets) + " %"
    path = save(figure, directory / "convergence.png")
    return FigureResult("convergence", title, caption + ".", path)


def ap_vs_k(results, directory: Path, colours: dict) -> FigureResult:
    """Deformable AP against K (mean line, one dot per run); full-attention baselines as lines."""
    title = "AP vs K"
    caption = "AP (%) of the deformable runs against K (line: mean over runs, dots: each run)"
    ablation = results.ablation
    ok = ablation[(ablation["metric"] == "AP") & ablation["failure"].isna()]
    deformable = ok[ok["backend"] == "stdeform"]
    if deformable.empty:
        missing = "No finished deformable (stdeform) ablation runs with an AP to plot against K."
        return FigureResult("ap-vs-k", title, caption, None, missing)
    deformable = deformable.assign(
        K=[options.get("K") for options in deformable["options"]],
        family=["stdeform " + mode_label("stdeform", options) for options in deformable["options"]],
    )
    figure, axes = new_figure()
    for (family, backbone), runs in deformable.groupby(["family", "backbone"], dropna=False):
        means = runs.groupby("K")["value"].mean()
        colour = colours.get(runs["method"].iloc[0])
        axes.plot(
            means.index,
            100 * means.values,
            marker="o",
            color=colour,
            label=f"{family} ({backbone})",
        )
        axes.scatter(runs["K"], 100 * runs["value"], color=colour, s=12, alpha=0.6)
    baselines = ok[ok["backend"] == "full"]
    for method, runs in baselines.groupby("method"):
        axes.axhline(
            100 * runs["value"].mean(),
            color=colours.get(method),
            linestyle="--",
            label=f"{method} baseline (n={len(runs)})",
        )
    ks = sorted(deformable["K"].dropna().unique())
    axes.set_xscale("log", base=2)
    axes.set_xticks(ks, [str(int(k)) for k in ks])
    axes.set_xlabel("K (sampling points per query)")
    axes.set_ylabel("AP (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    if not baselines.empty:
        caption += "; dashed: the full-attention baseline (mean over its runs)"
    failed = ablation[(ablation["metric"] == "AP") & ablation["failure"].notna()]
    if not failed.empty:
        caption += "; not plotted, without an AP: " + ", ".join(sorted(set(failed["method"])))
    path = save(figure, directory / "ap_vs_k.png")
    return FigureResult("ap-vs-k", title, caption + ".", path)


def scaling(results, directory: Path, colours: dict, metric: str) -> FigureResult:
    """Time or memory of one encoder layer against tokens, log-log, fitted slope in the legend."""
    name, unit, filename = {
        "time": ("time", "s", "time_vs_tokens.png"),
        "peak_memory": ("peak memory", "MiB", "memory_vs_tokens.png"),
    }[metric]
    key = f"scaling-{metric.replace('_', '-')}"
    title = f"Scaling: {name} vs tokens"
    caption = (
        f"One encoder layer's {name} against tokens (T·H·W), log-log; circles: T sweep, "
        "squares: H×W sweep; lines: the fit over both, slope b in the legend"
    )
    series = [s for s in series_of(results) if s.metric == metric and not s.ok.empty]
    if not series:
        missing = f"No successful scaling measurements of {name} to plot."
        return FigureResult(key, title, caption, None, missing)
    figure, axes = new_figure()
    for s in series:
        colour = colours.get(s.method)
        for sweep, points in s.ok.groupby("sweep", dropna=False):
            axes.scatter(
                points["tokens"],
                points["value"],
                color=colour,
                s=16,
                marker=SWEEP_MARKERS.get(sweep, "^"),
            )
        label = f"{s.method} · {s.device}: "
        if s.slope is None:
            axes.plot([], [], color=colour, label=label + "no fit (< 2 points)")
            continue
        tokens = np.geomspace(s.ok["tokens"].min(), s.ok["tokens"].max(), 20)
        axes.plot(
            tokens, s.scale * tokens**s.slope, color=colour, label=label + f"b = {s.slope:.2f}"
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("tokens (T·H·W)")
    axes.set_ylabel(f"{name} ({unit})")
    axes.grid(alpha=0.3, which="both")
    handles, labels = axes.get_legend_handles_labels()
    for sweep, label in SWEEPS[:2]:
        handles.append(Line2D([], [], color="0.4", marker=SWEEP_MARKERS[sweep], linestyle=""))
        labels.append(label)
    axes.legend(handles, labels, fontsize=7)
    path = save(figure, directory / filename)
    return FigureResult(key, title, caption + ".", path)


def draw_figures(results, out_dir: Path) -> list[FigureResult]:
    """All figures into out_dir/figures; stale PNGs of figures not drawn this time are removed."""
    directory = out_dir / "figures"
    colours = method_colours(results)
    figures = [
        convergence(results, directory, colours),
        ap_vs_k(results, directory, colours),
        scaling(results, directory, colours, "time"),
        scaling(results, directory, colours, "peak_memory"),
    ]
    drawn = {f.path.name for f in figures if f.path}
    for stale in ("convergence.png", "ap_vs_k.png", "time_vs_tokens.png", "memory_vs_tokens.png"):
        if stale not in drawn:
            (directory / stale).unlink(missing_ok=True)
    return figures
