"""The K ablation and the full-attention baseline: ``python -m bench.ablate --k 16 32``.

Trains the full-attention baseline and one ``stdeform`` run per K (per seed), each in its own
process (bench.isolation), on the synthetic set by default (generated when absent), then prints
and saves the table: backbone, backend, mode, K, AP, AP50, AP75, AR1, AR10, device-hours and
epochs to the target AP, peak memory.

Files under --out (default results/):
    runs/<run>/{log.jsonl, checkpoint.pt, final.json, config.json}   one directory per run
    ablation.jsonl    one record per (run, metric) in bench.store's format (later lines win)
    ablation.csv, ablation.md   the table

By default every run starts from the same backbone, pretrained once for --pretrain-iterations on
per-pixel shape classes of the training frames (bench.pretrain; VisTR starts from pretrained
weights too, and nothing can be downloaded here); --pretrain-iterations 0 trains from scratch.

Rerunning skips finished runs (those with final.json) and resumes unfinished ones from their
checkpoints; a run that fails (error, OOM, timeout) is recorded with its status and the others go
on. The target AP is --target-ap or 90% of the best final AP among the runs.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd

from bench.convergence import default_target, final_ap, reach, read_log
from bench.environment import environment
from bench.isolation import run_isolated
from bench.store import ResultsStore, record
from bench.train import TrainConfig, data_paths, parse_overrides
from models import get_preset

SUMMARY_METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")


def plan_runs(args) -> list[TrainConfig]:
    """One TrainConfig per (backend setting, seed): the baseline(s) first, then K ascending."""
    settings = []
    if "full" in args.backends:
        settings.append(("full", f"full-{args.full_impl}", {"attention_impl": args.full_impl}))
    if "stdeform" in args.backends:
        for k in sorted(set(args.k)):
            settings.append(
                ("stdeform", f"stdeform-{args.mode}-k{k}", {"n_points": k, "mode": args.mode})
            )
    runs = []
    for seed in args.seeds:
        for backend, name, overrides in settings:
            runs.append(
                TrainConfig(
                    run=f"{name}-seed{seed}",
                    out=str(Path(args.out) / "runs"),
                    preset=args.preset,
                    backend=backend,
                    overrides={**overrides, **args.overrides},
                    data=args.data,
                    iterations=args.iterations,
                    eval_every=args.eval_every,
                    budget_minutes=args.budget_minutes,
                    seed=seed,
                    device=args.device,
                    threads=args.threads,
                    val_videos=args.val_videos,
                )
            )
    return runs


def run_case(config: TrainConfig, args) -> dict:
    """The identity of a run in the results (what the reports group by)."""
    overrides = config.overrides
    options = (
        {"impl": overrides.get("attention_impl")}
        if config.backend == "full"
        else {"mode": overrides.get("mode"), "K": overrides.get("n_points")}
    )
    return {
        "kind": "ablation",
        "run": config.run,
        "preset": config.preset,
        "backbone": get_preset(config.preset, **overrides).backbone,
        "backend": config.backend,
        "options": options,
        "data": config.data,
        "seed": config.seed,
        "budget_minutes": config.budget_minutes,
        "iterations": config.iterations,
        "pretrained_backbone": config.overrides.get("backbone_weights") is not None,
    }


def pretrain(args) -> dict | None:
    """The shared pretrained backbone (in its own process); None when disabled."""
    if args.pretrain_iterations <= 0:
        return None
    paths = {k: str(v) for k, v in data_paths(TrainConfig(run="pretrain", data=args.data)).items()}
    outcome = run_isolated(
        "bench.pretrain:pretrain_backbone",
        {
            "preset_name": args.preset,
            "paths": paths,
            "out": str(Path(args.out) / "pretrained"),
            "iterations": args.pretrain_iterations,
            "threads": args.threads,
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


def train_runs(runs: list[TrainConfig], args) -> dict[str, str]:
    """Train every unfinished run in its own process; returns run -> status."""
    statuses = {}
    for config in runs:
        final = config.run_dir / "final.json"
        if final.exists():
            statuses[config.run] = "ok"
            print(f"[ablate] {config.run}: finished before, skipped")
            continue
        resumed = (config.run_dir / "checkpoint.pt").exists()
        print(f"[ablate] {config.run}: {'resuming' if resumed else 'training'}", flush=True)
        timeout = (config.budget_minutes or 60) * 60 * 1.5 + 600
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


TO_TARGET = (  # metric, key of bench.convergence.reach, unit
    ("device_hours_to_target", "device_hours", "device-hours"),
    ("epochs_to_target", "epoch", "epochs"),
    ("iterations_to_target", "iteration", "iterations"),
)


def run_records(case: dict, final: dict, reached: dict | None, target: float | None, env: dict):
    """The store records of one finished run: final metrics, convergence, cost."""
    metrics = final["metrics"]
    records = [record(case, m, metrics.get(m), "", env) for m in SUMMARY_METRICS]
    why = {} if reached else {"reason": "not reached"}
    for metric, key, unit in TO_TARGET:
        value = reached[key] if reached else None
        records.append(record(case, metric, value, unit, env, target_AP=target, **why))
    records += [
        record(case, "device_hours", final["device_hours"], "device-hours", env),
        record(case, "epochs", final["epochs"], "epochs", env),
        record(case, "peak_memory", final["peak_memory_MiB"], "MiB", env),
    ]
    return records


def summarise(runs: list[TrainConfig], statuses: dict[str, str], args) -> pd.DataFrame:
    """Append one record per (run, metric) to ablation.jsonl and return the table."""
    logs = {config.run: read_log(config.run_dir / "log.jsonl") for config in runs}
    finals = {}
    for config in runs:
        path = config.run_dir / "final.json"
        finals[config.run] = json.loads(path.read_text()) if path.exists() else None
    target = args.target_ap
    if target is None:
        target = default_target([final_ap(logs[c.run]) for c in runs if finals[c.run]])
    store = ResultsStore(Path(args.out) / "ablation.jsonl")
    env = environment(args.device)
    rows = []
    for config in runs:
        case = run_case(config, args)
        final = finals[config.run]
        row = {"run": config.run, "backbone": case["backbone"], "backend": config.backend}
        row |= {"mode": case["options"].get("mode"), "K": case["options"].get("K")}
        if final is None:
            status = statuses.get(config.run, "not run")
            store.append(*(record(case, m, None, "", env, status=status) for m in SUMMARY_METRICS))
            rows.append(row | {"status": status})
            continue
        reached = reach(logs[config.run], target) if target is not None else None
        # the run's own environment (a run finished before may come from another commit);
        # final.json files written before it was recorded fall back to this process's
        run_env = final.get("environment") or (
            env | {"device_name": final["device_name"], "device_count": final["n_devices"]}
        )
        store.append(*run_records(case, final, reached, target, run_env))
        not_reached = "not reached"
        rows.append(
            row
            | {m: final["metrics"].get(m) for m in SUMMARY_METRICS}
            | {
                "device-h to target": reached["device_hours"] if reached else not_reached,
                "epochs to target": reached["epoch"] if reached else not_reached,
                "device-h": final["device_hours"],
                "epochs": final["epochs"],
                "peak memory (MiB)": final["peak_memory_MiB"],
                "status": "ok",
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["target_AP"] = target
    return table


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, nargs="+", default=[16, 32], help="sampling points K")
    parser.add_argument(
        "--backends", nargs="+", default=["full", "stdeform"], choices=["full", "stdeform"]
    )
    parser.add_argument("--mode", default="3d", choices=["3d", "frames", "frame"])
    parser.add_argument("--full-impl", default="sdpa", choices=["sdpa", "math"])
    parser.add_argument(
        "--data", default="synthetic", help="'synthetic' or a YouTube-VIS directory"
    )
    parser.add_argument("--preset", default="quick", choices=["quick", "paper"])
    parser.add_argument("--budget-minutes", type=float, default=7.5, help="wall-clock per run")
    parser.add_argument("--iterations", type=int, default=TrainConfig.iterations)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--target-ap", type=float, default=None, help="default: 0.9 x best final AP"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--val-videos", type=int, default=None)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE", help="model overrides for every run"
    )
    parser.add_argument(
        "--pretrain-iterations",
        type=int,
        default=800,
        help="shared backbone pretraining (bench.pretrain); 0 = from scratch",
    )
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    args.overrides = parse_overrides(args.set)
    pretrained = pretrain(args)
    if pretrained is not None:
        args.overrides.setdefault("backbone_weights", pretrained["weights"])
    runs = plan_runs(args)
    statuses = train_runs(runs, args)
    table = summarise(runs, statuses, args)
    out = Path(args.out)
    table.to_csv(out / "ablation.csv", index=False)
    markdown = table.to_markdown(index=False, floatfmt=".3g")
    (out / "ablation.md").write_text(f"target AP: {table.attrs['target_AP']}\n\n{markdown}\n")
    print(
        f"\ntarget AP: {table.attrs['target_AP']}\n{markdown}\n\nwritten: {out / 'ablation.jsonl'}, {out / 'ablation.csv'}"
    )
    return table


if __name__ == "__main__":
    main()
