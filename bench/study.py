"""Studies longer than the ablation: each backend's learning rate, and convergence to the plateau.

    python -m bench.study lr --backends full stdeform:mode=frames,n_points=16 --seeds 0 1
    python -m bench.study convergence --backends full stdeform:mode=frames,n_points=16 \\
        --seeds 0 1 --iterations 4800

``lr``: every configuration trains at each of --lrs (default: the preset's lr / 3, lr, x3) for
the ablation's iterations and seeds; the rate with the best mean final validation AP over seeds
is the configuration's choice (``choose_lr``). Without --lrs, a choice at the edge of the grid
extends it by another factor of 3 on that side (up to 5 rates), so a choice is not an edge of
an arbitrary grid. Writes lr_sweep.{jsonl,csv,md} and
lr_choice.json ({encoder backend: rate}, merged with the choices of earlier sweeps in the same
folder); the preset's lr_by_backend holds the committed choice that bench.ablate trains with.

``convergence``: full attention and a deformable setting trained for --iterations (default 8x
the ablation's) at their own learning rates, several seeds each, evaluated as often as the
ablation (--eval-every's default), so iterations to the target have the ablation's resolution.
A run's curve has flattened when it gained less than 0.5 AP points over its last 20% of
iterations (bench.convergence.plateaued).
The target is 90% of the lower of the configurations' mean final AP, so that every configuration
can reach it (``study_target``); per seed, iterations to the target give the ratio dense /
deformable with its interval (bench.stats.ratio_interval, paired by seed); a configuration that
never reaches it reports its plateau AP and the iterations it ran. Writes study.{jsonl,csv,md}.

Both are resumable like the ablation (finished runs are skipped, killed ones resume) and share
its options; their runs sit in <out>/runs/ as lr-... and study-....
"""

import json
import sys
from pathlib import Path

import pandas as pd

from bench import ablate, cli
from bench.atomic import write_atomic
from bench.convergence import DEFAULT_TARGET_FRACTION, plateau_gain, plateaued
from bench.stats import mean_interval, ratio_interval, verdict

DEFAULT_STUDY_BACKENDS = ("full", "stdeform:mode=frames,n_points=16")
LR_FACTOR = 3.0  # the sweep's rates lie a factor of 3 apart
MAX_RATES = 5  # an edge optimum extends the grid up to this many rates
STUDY_LENGTH = 8  # the convergence study runs this many times the ablation's iterations


def choose_lr(outcome: ablate.Outcome) -> dict[str, float]:
    """Per configuration label, the rate whose mean final AP over seeds is highest."""
    best: dict[str, tuple[float, float]] = {}
    for (setting, lr), group in outcome.groups().items():
        interval = mean_interval(outcome.final_aps(group).values())
        if interval is None:
            continue
        if setting.label not in best or interval.value > best[setting.label][1]:
            best[setting.label] = (lr, interval.value)
    return {label: lr for label, (lr, _) in best.items()}


def study_target(configuration_means: list[float | None]) -> float | None:
    """90% of the lowest configuration's mean final AP (every configuration can reach it)."""
    known = [ap for ap in configuration_means if ap is not None and ap > 0]
    return DEFAULT_TARGET_FRACTION * min(known) if known else None


def ratios(outcome: ablate.Outcome) -> pd.DataFrame:
    """Iterations to target, dense over each other configuration, paired by seed."""
    groups = outcome.groups()
    dense = next((g for g in groups if g[0].encoder.name == g[0].decoder.name == "full"), None)
    rows = []
    for key, group in groups.items():
        if dense is None or key == dense:
            continue
        per_seed = {}
        for planned in (*groups[dense], *group):
            hit = outcome.reached.get(planned.config.run)
            per_seed.setdefault(planned.config.seed, {})[planned.group == dense] = (
                hit["iteration"] if hit else None
            )
        pairs = [(v.get(True), v.get(False)) for v in per_seed.values()]
        both = [(d, o) for d, o in pairs if d is not None and o is not None]
        interval = ratio_interval([d for d, _ in both], [o for _, o in both])
        censored = len(both) < len(pairs)
        value = "—" if interval is None else f"{interval.value:.2f}"
        if interval is not None and interval.low is not None:
            value += f" [{interval.low:.2f}, {interval.high:.2f}]"
        rows.append(
            {
                "ratio": f"{dense[0].label} / {key[0].label}",
                "iterations to target, dense / other": value,
                "seeds with both reaching": f"{len(both)} of {len(pairs)}",
                "verdict": verdict(interval, null=1.0) if not censored else "censored: lower bound",
            }
        )
    return pd.DataFrame(rows)


def plateau_table(outcome: ablate.Outcome) -> pd.DataFrame:
    """Per configuration: final (plateau) AP, AP gained over the last 20%, flattened runs."""
    rows = []
    for (setting, lr), group in outcome.groups().items():
        done = [p for p in group if outcome.usable(p)]
        logs = [outcome.logs[p.config.run] for p in done]
        gains = [plateau_gain(log) for log in logs]
        rows.append(
            {
                "configuration": setting.label,
                "lr": f"{lr:g}",
                "final AP (%)": ablate._percent(mean_interval(outcome.final_aps(group).values())),
                "AP gained over the last 20% (points)": ablate._percent(mean_interval(gains)),
                "flattened (< 0.5 points)": f"{sum(plateaued(log) for log in logs)} of {len(logs)}",
                "iterations": ", ".join(str(log[-1]["iteration"]) for log in logs if log),
            }
        )
    return pd.DataFrame(rows)


def widened(grid: dict, chosen: dict[str, float], factor: float = LR_FACTOR) -> bool:
    """Extend each configuration's grid (label -> ascending rates) by one ``factor`` past a
    chosen rate at its edge; True when any grid grew."""
    grew = False
    for label, rates in grid.items():
        if label not in chosen or len(rates) >= MAX_RATES:
            continue
        if chosen[label] == rates[0]:
            rates.insert(0, rates[0] / factor)
            grew = True
        elif chosen[label] == rates[-1]:
            rates.append(rates[-1] * factor)
            grew = True
    return grew


def sweep_learning_rates(settings, args, out: Path) -> dict:
    """The sweep of the module docstring; extends a configuration's grid by a factor of 3 past
    an edge optimum (up to MAX_RATES rates), so the choice is never the grid's edge by default."""
    base = ablate.get_preset(args.preset, **args.overrides).lr
    start = args.lrs or [base / LR_FACTOR, base, base * LR_FACTOR]
    grid = {setting.label: sorted(start) for setting in settings}
    while True:
        runs = [
            planned
            for setting in settings
            for planned in ablate.plan_runs([setting], args, lrs=grid[setting.label], kind="lr")
        ]
        statuses = ablate.train_runs(runs)
        outcome = ablate.collect(runs, args.target_ap)
        chosen = choose_lr(outcome)
        if args.lrs or not widened(grid, chosen):
            break
    ablate.store_records(outcome, statuses, out / "lr_sweep.jsonl", "lr_sweep", args.device)
    by_backend = {s.encoder.name: chosen[s.label] for s in settings if s.label in chosen}
    choice = out / "lr_choice.json"  # other backends' choices (earlier sweeps) are kept
    earlier = json.loads(choice.read_text()) if choice.exists() else {}
    write_atomic(choice, json.dumps({**earlier, **by_backend}, indent=2, sort_keys=True) + "\n")
    text = ablate.write_tables(out, "lr_sweep", [ablate.summary_table(outcome)], outcome.target)
    print(f"\n{text}\nchosen (lr_choice.json): {by_backend}")
    ablate.exit_on_failures(statuses, "study")
    return {"chosen": by_backend}


def build_parser():
    parser = cli.parser("python -m bench.study", __doc__)
    commands = parser.add_subparsers(dest="study", required=True, parser_class=cli.ArgumentParser)
    for name, help_text in (("lr", "the learning-rate sweep"), ("convergence", "the long runs")):
        sub = commands.add_parser(name, help=help_text, formatter_class=cli.HelpFormatter)
        for action in ablate.build_parser()._actions:
            if action.dest in ("help",):
                continue
            sub._add_action(action)
        if name == "lr":
            sub.add_argument("--lrs", type=cli.positive_float, nargs="+", default=None,
                             help="rates to try (default: the preset's lr / 3, lr, lr x 3)")  # fmt: skip
            sub.set_defaults(seeds=[0, 1], k=[])
        else:
            sub.set_defaults(backends=list(DEFAULT_STUDY_BACKENDS), k=[], seeds=[0, 1],
                             iterations=None, eval_every=None)  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.study == "convergence":
        args.iterations = args.iterations or STUDY_LENGTH * ablate.TrainConfig.iterations
        args.eval_every = args.eval_every or ablate.TrainConfig.eval_every
    settings = ablate.prepare(args)
    out = Path(args.out)
    if args.study == "lr":
        return sweep_learning_rates(settings, args, out)
    runs = ablate.plan_runs(settings, args, kind="study")
    statuses = ablate.train_runs(runs)
    outcome = ablate.collect(runs, args.target_ap, study_target)
    ablate.store_records(outcome, statuses, out / "study.jsonl", "study", args.device)
    tables = [plateau_table(outcome), ablate.summary_table(outcome), ratios(outcome)]
    print("\n" + ablate.write_tables(out, "study", tables, outcome.target))
    ablate.exit_on_failures(statuses, "study")
    return {"target": outcome.target}


if __name__ == "__main__":
    sys.exit(cli.run("python -m bench.study", main) and 0)
