"""The ablation: ``python -m bench.ablate --k 16 32``.

    python -m bench.ablate --k 16 32                  # full attention + stdeform frames K=16, 32
    python -m bench.ablate --backends full stdeform:mode=frames stdeform:mode=3d --k 16 32
    python -m bench.ablate --backends window:size=2x4x4 neighborhood --seeds 0 1 2
    python -m bench.ablate --hybrids full/stdeform:mode=frames,n_points=32 \\
                                     stdeform:mode=frames,n_points=32/full

Each configuration (a backend spec for both sides, or an encoder/decoder pair) trains once per
seed, each run in its own process (bench.isolation); seed s means the same data order and the
same initial shared weights in every configuration, so configurations are compared seed by seed.
``--k`` sets n_points of every spec whose backend has that option (one configuration per K).
Every run starts from one backbone pretrained on a synthetic split generated with another seed
(bench.pretrain), whose stages before layer3 stay frozen (--set train_backbone_from=conv1 trains
all of it), unless --pretrain-iterations 0. The learning rate of a configuration is its
encoder backend's entry in the preset's lr_by_backend (from that backend's own sweep, bench.study
lr), else the preset's lr; --set lr=... overrides it for every run.

Files under --out (default results/):
    runs/<run>/{config.json, checkpoint.pt, log.jsonl, final.json}   one folder per run
    ablation.jsonl    one record per (run, metric) in bench.store's format (later lines win)
    ablation.csv, ablation.md   per configuration: mean ± 95% interval over seeds, how many runs
                      reached the target; then paired differences between configurations

A rerun skips finished runs and resumes unfinished ones. A run that fails is recorded with its
status and the others go on; OOM and timeouts are results, errors are failures: the command
finishes the sweep, then exits with status 1 and lists what failed. The target AP is --target-ap
or 90% of the best configuration's mean final AP (bench.convergence).
"""

import dataclasses
import itertools
import sys
from pathlib import Path

import pandas as pd

from bench import cli
from bench.convergence import TARGET_FLOOR, default_target, final_ap, reach
from bench.data.source import pretraining_data, resolve_data
from bench.environment import environment
from bench.isolation import run_isolated
from bench.method import Setting, method_fields, plan_settings, slug
from bench.runfiles import RunFiles, finished_twin
from bench.stats import METHOD, mean_interval, paired_difference, verdict
from bench.store import ResultsStore, record
from bench.train import TrainConfig, parse_overrides
from models import PRESETS, get_preset

DEFAULT_BACKENDS = ("full", "stdeform:mode=frames")
# from the pretrained backbone only this stage on fine-tunes (DETR freezes its pretrained
# backbone's first stages); the measured cost and gain: docs/tuning.md
PRETRAINED_TRAIN_FROM = "layer3"
DEFAULT_SEEDS = (0, 1, 2)
SUMMARY_METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
TO_TARGET = (  # metric, key of bench.convergence.reach, unit
    ("iterations_to_target", "iteration", "iterations"),
    ("evaluations_to_target", "evaluations", "evaluations"),
    ("epochs_to_target", "epoch", "epochs"),
    ("device_hours_to_target", "device_hours", "device-hours"),
)


def learning_rate(setting: Setting, args) -> float:
    """--set lr=..., else the preset's rate for the encoder's backend, else the preset's lr."""
    preset = get_preset(args.preset, **args.overrides)
    if "lr" in args.overrides:
        return preset.lr
    return preset.lr_by_backend.get(setting.encoder.name, preset.lr)


@dataclasses.dataclass(frozen=True)
class Planned:
    """One run of a plan: its configuration, learning rate and TrainConfig."""

    setting: Setting
    lr: float
    config: TrainConfig

    @property
    def group(self) -> tuple[Setting, float]:
        """Runs of one group differ only by seed."""
        return (self.setting, self.lr)


def plan_runs(settings: list[Setting], args, lrs=None, kind: str = "ablation") -> list[Planned]:
    """One run per (seed, configuration, learning rate): ``lrs`` (a sweep) or each configuration's
    own rate (learning_rate). Runs of other kinds than the ablation are named "<kind>-..."."""
    runs = []
    for seed in args.seeds:
        for setting in settings:
            for lr in lrs or [learning_rate(setting, args)]:
                name = slug(setting.label) + (f"-lr{lr:g}" if lrs else "") + f"-seed{seed}"
                config = TrainConfig(
                    run=name if kind == "ablation" else f"{kind}-{name}",
                    out=str(Path(args.out) / "runs"),
                    preset=args.preset,
                    backend=str(setting.encoder),
                    decoder=str(setting.decoder),
                    overrides={**args.overrides, "lr": lr},
                    data=args.data,
                    iterations=args.iterations,
                    eval_every=args.eval_every,
                    lr_drop=args.lr_drop,
                    budget_minutes=args.budget_minutes,
                    seed=seed,
                    device=args.device,
                    threads=args.threads,
                    val_videos=args.val_videos,
                )
                runs.append(Planned(setting, lr, config))
    return runs


def run_case(config: TrainConfig, kind: str = "ablation") -> dict:
    """The identity of a run in the results (what the reports group by)."""
    preset = get_preset(config.preset, **config.overrides)
    return {
        "kind": kind,
        "run": config.run,
        "preset": config.preset,
        "backbone": preset.backbone,
        **method_fields(config.specs()),
        "data": config.data,
        "seed": config.seed,
        "iterations": config.iterations,
        "eval_every": config.eval_every,
        "lr": preset.lr,
        "budget_minutes": config.budget_minutes,
        "pretrained_backbone": config.overrides.get("backbone_weights") is not None,
    }


def pretrain(args) -> dict | None:
    """The shared pretrained backbone (in its own process), trained on data disjoint from the
    runs' (bench.data.source.pretraining_data); None when disabled."""
    if args.pretrain_iterations <= 0:
        return None
    source, disjoint = pretraining_data(args.data)
    paths = {k: str(v) for k, v in resolve_data(source).items()}
    outcome = run_isolated(
        "bench.pretrain:pretrain_backbone",
        {
            "preset_name": args.preset,
            "paths": paths,
            "out": str(Path(args.out) / "pretrained"),
            "iterations": args.pretrain_iterations,
            "threads": args.threads,
            "overrides": args.overrides,
            "data": {"source": source, "disjoint": disjoint},
        },
        timeout=3600,
        stream=True,
    )
    if outcome.status != "ok":
        raise RuntimeError(f"backbone pretraining failed: {outcome.status}\n{outcome.message}")
    print(
        f"[ablate] pretrained backbone: {outcome.result['weights']} "
        f"({outcome.result['seconds']:.0f} s)",
        flush=True,
    )
    return outcome.result


def train_runs(runs: list[Planned]) -> dict[str, str]:
    """Train every unfinished run in its own process; returns run -> status. A run with a
    finished twin (the same identity under another name, bench.runfiles) takes its results."""
    statuses = {}
    for config in (planned.config for planned in runs):
        files = RunFiles(config.run_dir)
        identity = config.identity()
        files.claim(dataclasses.asdict(config), identity)  # refuse a mismatch first
        if files.finished():
            statuses[config.run] = "ok"
            print(f"[ablate] {config.run}: finished before, skipped")
            continue
        twin = None if files.checkpoint.exists() else finished_twin(config.run_dir, identity)
        if twin is not None:
            files.adopt(twin, config.run)
            statuses[config.run] = "ok"
            print(f"[ablate] {config.run}: the same settings as {twin.directory.name}, its "
                  "results reused", flush=True)  # fmt: skip
            continue
        resumed = files.checkpoint.exists()
        print(f"[ablate] {config.run}: {'resuming' if resumed else 'training'}", flush=True)
        timeout = (config.budget_minutes or 60 * 24) * 60 * 1.5 + 600
        outcome = run_isolated(
            "bench.train:train_from_dict",
            {"config": dataclasses.asdict(config)},
            timeout,
            stream=True,
        )
        statuses[config.run] = outcome.status
        if outcome.status != "ok":
            print(f"[ablate] {config.run}: {outcome.status}\n{outcome.message[-1500:]}", flush=True)
    return statuses


def run_records(case: dict, final: dict, reached: dict | None, target: float | None) -> list:
    """The store records of one finished run: final metrics, convergence, cost."""
    env = final["environment"]  # where the run was trained (it may come from another commit)
    extra = {"run_status": final["status"]}  # "budget": cut short by the safety cap
    metrics = final["metrics"]
    records = [record(case, m, metrics.get(m), "", env, **extra) for m in SUMMARY_METRICS]
    why = {} if reached else {"reason": "not reached" if target is not None else "no target"}
    for metric, key, unit in TO_TARGET:
        value = reached[key] if reached else None
        records.append(record(case, metric, value, unit, env, target_AP=target, **why, **extra))
    for metric, value, unit in (
        ("iterations", final["iterations"], "iterations"),
        ("evaluations", final.get("evaluations"), "evaluations"),
        ("val_videos", final.get("val_videos"), "videos"),
        ("device_hours", final["device_hours"], "device-hours"),
        ("eval_seconds", final.get("eval_s"), "s"),
        ("epochs", final["epochs"], "epochs"),
        ("peak_memory", final["peak_memory_MiB"], "MiB"),
    ):
        records.append(record(case, metric, value, unit, env, **extra))
    return records


@dataclasses.dataclass
class Outcome:
    """What the runs of a plan gave: logs, final summaries, the target and who reached it."""

    runs: list[Planned]
    logs: dict[str, list]
    finals: dict[str, dict | None]
    target: float | None
    reached: dict[str, dict | None]

    def usable(self, planned: Planned) -> bool:
        """Finished all its iterations (a run cut by the safety cap is not compared)."""
        final = self.finals[planned.config.run]
        return final is not None and final["status"] == "ok"

    def groups(self) -> dict[tuple, list[Planned]]:
        grouped: dict[tuple, list[Planned]] = {}
        for planned in self.runs:
            grouped.setdefault(planned.group, []).append(planned)
        return grouped

    def final_aps(self, group: list[Planned]) -> dict[int, float]:
        """Seed -> final AP of the group's usable runs."""
        return {p.config.seed: final_ap(self.logs[p.config.run]) for p in group if self.usable(p)}


def collect(runs: list[Planned], target_ap: float | None, target_rule=default_target) -> Outcome:
    """Read the runs' files; the target is ``target_ap``, else ``target_rule`` applied to the
    groups' mean final AP (bench.convergence.default_target)."""
    logs = {p.config.run: RunFiles(p.config.run_dir).read_log() for p in runs}
    finals = {p.config.run: RunFiles(p.config.run_dir).finished() for p in runs}
    outcome = Outcome(runs, logs, finals, target_ap, {})
    if target_ap is None:
        means = [
            mean_interval(outcome.final_aps(group).values()) for group in outcome.groups().values()
        ]
        outcome.target = target_rule([m.value if m else None for m in means])
    for planned in runs:
        run = planned.config.run
        found = finals[run] is not None and outcome.target is not None
        outcome.reached[run] = reach(logs[run], outcome.target) if found else None
    return outcome


def store_records(outcome: Outcome, statuses: dict, path: Path, kind: str, device: str) -> None:
    """Append one record per (run, metric) to the results file at ``path``."""
    store = ResultsStore(path)
    env = environment(device)
    for planned in outcome.runs:
        config = planned.config
        case = run_case(config, kind)
        final = outcome.finals[config.run]
        if final is None:
            status = statuses.get(config.run, "not run")
            store.append(*(record(case, m, None, "", env, status=status) for m in SUMMARY_METRICS))
            continue
        store.append(*run_records(case, final, outcome.reached[config.run], outcome.target))


def summary_table(outcome: Outcome) -> pd.DataFrame:
    """Per configuration (and learning rate): mean ± interval over seeds, target reached."""
    rows = []
    for (setting, lr), group in outcome.groups().items():
        done = [p for p in group if outcome.usable(p)]
        finals = [outcome.finals[p.config.run] for p in done]
        row = {"configuration": setting.label, "lr": f"{lr:g}"}
        row["runs ok / planned"] = f"{len(done)} / {len(group)}"
        for metric in ("AP", "AP50", "AP75"):
            row[f"{metric} (%)"] = _percent(
                mean_interval([f["metrics"].get(metric) for f in finals])
            )
        hits = [
            outcome.reached[p.config.run]["iteration"]
            for p in done
            if outcome.reached[p.config.run]
        ]
        reached = f"{len(hits)} of {len(done)}" if outcome.target is not None else "no target"
        row["reached target"] = reached
        row["iterations to target"] = _plain(mean_interval(hits))
        excluded = [f"{p.config.run} ({outcome.finals[p.config.run]['status']})"
                    for p in group if outcome.finals[p.config.run] and not outcome.usable(p)]  # fmt: skip
        excluded += [f"{p.config.run} (failed)" for p in group if not outcome.finals[p.config.run]]
        row["excluded"] = ", ".join(excluded)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["target_AP"] = outcome.target
    return table


def _without_k(setting: Setting) -> tuple:
    """What a configuration is apart from its encoder's K (and the decoder's, when the same)."""
    encoder = setting.encoder.replace(n_points=1)
    decoder = encoder if setting.decoder == setting.encoder else setting.decoder
    return (str(encoder), str(decoder))


def differences(outcome: Outcome) -> pd.DataFrame:
    """Paired AP differences: each configuration against the first dense one (full encoder and
    decoder), and each K against the next larger K of the same configuration."""
    groups = outcome.groups()
    values = {setting: outcome.final_aps(group) for (setting, _), group in groups.items()}
    settings = list(values)
    dense = next((s for s in settings if s.encoder.name == s.decoder.name == "full"), None)
    pairs = [(dense, s) for s in settings if dense is not None and s != dense]
    families: dict[tuple, list[Setting]] = {}
    for setting in settings:
        if "n_points" in setting.encoder.options:
            families.setdefault(_without_k(setting), []).append(setting)
    for family in families.values():
        family.sort(key=lambda s: s.encoder.options["n_points"])
        pairs += list(itertools.pairwise(family))
    rows = []
    for a, b in pairs:
        interval = paired_difference(values[a], values[b])
        rows.append(
            {
                "comparison": f"{b.label} − {a.label}",
                "AP difference (points)": _percent(interval),
                "seeds": interval.n if interval else 0,
                "verdict": verdict(interval),
            }
        )
    return pd.DataFrame(rows, columns=["comparison", "AP difference (points)", "seeds", "verdict"])


def _percent(interval) -> str:
    if interval is None:
        return "—"
    if interval.low is None:
        return f"{100 * interval.value:.1f} (n=1)"
    return f"{100 * interval.value:.1f} ± {100 * interval.half_width:.1f} (n={interval.n})"


def _plain(interval) -> str:
    if interval is None:
        return "—"
    if interval.low is None:
        return f"{interval.value:.0f} (n=1)"
    return f"{interval.value:.0f} ± {interval.half_width:.0f} (n={interval.n})"


def build_parser():
    parser = cli.parser("python -m bench.ablate", __doc__)
    parser.add_argument("--k", type=cli.positive_int, nargs="*", default=[16, 32],
                        help="n_points (K) of every spec that has it; --k alone: each spec's "
                        "own")  # fmt: skip
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS), metavar="SPEC",
                        help="attention specs, each for both sides (attention.registry)")  # fmt: skip
    parser.add_argument("--hybrids", nargs="*", default=[], metavar="ENC/DEC",
                        help="encoder/decoder spec pairs, e.g. full/stdeform:mode=frames")  # fmt: skip
    parser.add_argument("--seeds", type=cli.nonnegative_int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="one run per seed and configuration (paired across configurations)")  # fmt: skip
    parser.add_argument(
        "--data", default="synthetic", help="'synthetic' or a YouTube-VIS directory"
    )
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="model preset (models/presets.py)")  # fmt: skip
    parser.add_argument("--iterations", type=cli.positive_int, default=TrainConfig.iterations,
                        help="optimizer steps per run")  # fmt: skip
    parser.add_argument("--eval-every", type=cli.positive_int, default=TrainConfig.eval_every,
                        help="evaluate every this many iterations and at the end")  # fmt: skip
    parser.add_argument("--lr-drop", type=cli.fraction, default=TrainConfig.lr_drop,
                        help="the learning rate drops x0.1 after this fraction of the iterations")  # fmt: skip
    parser.add_argument("--budget-minutes", type=cli.positive_float, default=None,
                        help="safety cap per run on wall clock; a run it stops is excluded")  # fmt: skip
    parser.add_argument("--target-ap", type=cli.fraction, default=None,
                        help="target AP as a fraction; default 0.9 x the best configuration's "
                        f"mean final AP (no target below {TARGET_FLOOR})")  # fmt: skip
    parser.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda or cuda:<i>")
    parser.add_argument("--threads", type=cli.positive_int, default=None,
                        help="torch threads per run (default: torch's)")  # fmt: skip
    parser.add_argument("--val-videos", type=cli.positive_int, default=None,
                        help="evaluate on the first n val videos (default: all)")  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="preset overrides for every run (models.presets.Preset fields)")  # fmt: skip
    parser.add_argument("--pretrain-iterations", type=cli.nonnegative_int, default=800,
                        help="shared backbone pretraining (bench.pretrain); 0 = from scratch")  # fmt: skip
    parser.add_argument("--out", default="results", help="results folder")
    return parser


def prepare(args) -> list[Setting]:
    """Parse --set and the specs (every spec checked before any work), check --out, pretrain the
    shared backbone; returns the configurations."""
    args.overrides = parse_overrides(args.set)
    settings = plan_settings(
        get_preset(args.preset, **args.overrides), args.backends, args.k, args.hybrids
    )
    cli.writable_dir(args.out)
    pretrained = pretrain(args)
    if pretrained is not None:
        args.overrides.setdefault("backbone_weights", pretrained["weights"])
        args.overrides.setdefault("train_backbone_from", PRETRAINED_TRAIN_FROM)
    return settings


def write_tables(out: Path, name: str, tables: list[pd.DataFrame], target: float | None) -> str:
    """<name>.csv (the first table) and <name>.md (all of them, with the target and method)."""
    tables[0].to_csv(out / f"{name}.csv", index=False)
    target_text = f"{100 * target:.1f} %" if target is not None else "none"
    text = f"target AP: {target_text}; intervals: {METHOD}\n\n"
    text += "\n\n".join(table.to_markdown(index=False) for table in tables) + "\n"
    (out / f"{name}.md").write_text(text)
    return text


def exit_on_failures(statuses: dict[str, str], prog: str) -> None:
    """Exit 1, naming them, when runs errored (OOM and timeouts are results)."""
    failed = {run: s for run, s in statuses.items() if s.startswith("error")}
    for run, status in failed.items():
        print(f"[{prog}] failed: {run}: {status}", file=sys.stderr)
    if failed:
        sys.exit(1)


def main(argv: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    args = build_parser().parse_args(argv)
    settings = prepare(args)
    runs = plan_runs(settings, args)
    statuses = train_runs(runs)
    outcome = collect(runs, args.target_ap)
    out = Path(args.out)
    store_records(outcome, statuses, out / "ablation.jsonl", "ablation", args.device)
    table, diffs = summary_table(outcome), differences(outcome)
    text = write_tables(out, "ablation", [table, diffs], outcome.target)
    print(f"\n{text}\nwritten: {out}/ablation.{{jsonl,csv,md}}")
    exit_on_failures(statuses, "ablate")
    return table, diffs


if __name__ == "__main__":
    cli.run("python -m bench.ablate", main)
