"""``python -m bench.measure``: FLOPs, FPS, peak memory, training-step time and scaling sweeps.

    python -m bench.measure --preset paper quick --backends full full:impl=math \\
        stdeform:mode=frames --k 16 32 --metrics flops fps memory step scaling --out results/
    python -m bench.measure --backends window neighborhood divided --hybrids full/stdeform

Methods are named as bench.ablate names them (attention specs, one per K in --k where the
backend has n_points, and ENCODER/DECODER hybrids), so the same arguments measure exactly the
ablation's methods. Per (preset, method): ``flops`` (fvcore per component, FlopCounterMode, the
analytic formulas), ``fps`` and ``memory`` (one inference case: its first pass measures peak
memory and warms up, then up to --repeats timed passes, cut to about --case-seconds), ``step``
(one training step as bench.ablate trains it, pretrained backbone fine-tuned from layer3, and one
evaluation pass over a video of --eval-frames frames, timed, for the presets in --step-presets:
the times that turn a run's iterations into device-hours). ``scaling``:
one encoder layer (d=384, 8 heads, FFN 2048: the paper's) per encoder spec over T in
{4, 8, 16, 32, 64} at 10x17 and over H x W at T = 8.

Every case runs in its own subprocess with a time limit; its records (or its failure: OOM,
timeout, error) are appended to <out>/measurements.jsonl; a rerun skips finished cases. OOM and
timeouts are results; when a case errors, the sweep still finishes, then the command exits with
status 1 and lists the errors.
"""

import os
import sys

import torch
from tqdm import tqdm

from bench import cli
from bench.ablate import PRETRAINED_TRAIN_FROM
from bench.environment import environment
from bench.isolation import run_isolated
from bench.method import plan_settings
from bench.store import ResultsStore, case_id, record
from models import PRESETS, get_preset

DEFAULT_BACKENDS = ("full", "full:impl=math", "stdeform:mode=frames")
SCALING_T = (4, 8, 16, 32, 64)
SCALING_HW = ((5, 9), (10, 17), (15, 26), (20, 34), (30, 51))
SCALING_LAYER = {"d_model": 384, "n_heads": 8, "dim_feedforward": 2048}
METRICS = ("flops", "fps", "memory", "step", "scaling")
METRICS_OF_KIND = {
    "flops": ("macs",),
    "inference": ("fps", "peak_memory"),
    "step": ("step_time", "eval_video_time"),
    "scaling": ("time", "peak_memory"),
}


def model_cases(args) -> list[tuple[str, dict]]:
    """(case function, case) for every requested model-level measurement."""
    kinds = [kind for kind, wanted in (("flops", {"flops"}), ("inference", {"fps", "memory"}))
             if wanted & set(args.metrics)]  # fmt: skip
    cases = []
    for preset_name in args.preset:
        preset = get_preset(preset_name)
        step = "step" in args.metrics and preset_name in args.step_presets
        for setting in plan_settings(preset, args.backends, args.k, args.hybrids):
            for kind in kinds + (["step"] if step else []):
                case = {
                    "kind": kind,
                    "preset": preset_name,
                    **setting.fields,
                    "device": args.device,
                    "threads": args.threads,
                    "input": {
                        "T": preset.num_frames,
                        "height": preset.short_side,
                        "width": preset.max_size,
                    },
                }
                if kind in ("inference", "step"):
                    case.update(warmup=args.warmup, repeats=args.repeats, seconds=args.case_seconds)
                if kind == "step":  # the step as bench.ablate trains it
                    case["eval_frames"] = args.eval_frames
                    case["overrides"] = {"train_backbone_from": PRETRAINED_TRAIN_FROM}
                cases.append((f"bench.measure.cases:{kind}_case", case))
    return cases


def scaling_cases(args) -> list[tuple[str, dict]]:
    """One encoder layer per distinct encoder spec of the methods, over the T and H x W sweeps."""
    preset = get_preset("paper")
    encoders = []
    for setting in plan_settings(preset, args.backends, args.k, args.hybrids):
        fields = {"backend": setting.fields["backend"], "options": setting.fields["options"]}
        if fields not in encoders:
            encoders.append(fields)
    points = [("T", T, 10, 17) for T in SCALING_T] + [("HW", 8, H, W) for H, W in SCALING_HW]
    cases = []
    for fields in encoders:
        for sweep, T, H, W in points:
            case = {
                "kind": "scaling",
                "preset": None,
                **fields,
                "sweep": sweep,
                "T": T,
                "H": H,
                "W": W,
                "tokens": T * H * W,
                **SCALING_LAYER,
                "device": args.device,
                "threads": args.threads,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "seconds": args.case_seconds,
            }
            cases.append(("bench.measure.cases:scaling_case", case))
    return cases


def describe(case: dict) -> str:
    what = case.get("preset") or f"{case.get('tokens')} tokens"
    decoder = f" / {case['decoder']['backend']}" if case.get("decoder") else ""
    return f"{case['kind']} {what} {case['backend']}{decoder} {case['options']}"


def run_cases(cases, store: ResultsStore, args) -> dict[str, int]:
    """Run the unfinished cases one by one, isolated; record results or failures."""
    finished = store.finished(retry_errors=args.retry_errors)
    todo = [(target, case) for target, case in cases if case_id(case) not in finished]
    counts = {"skipped": len(cases) - len(todo)}
    limit = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.85)
    progress = tqdm(todo, desc="measure", unit="case", dynamic_ncols=True)
    for target, case in progress:
        progress.set_postfix_str(describe(case))
        outcome = run_isolated(
            target,
            {"case": case},
            timeout=args.timeout,
            memory_limit_bytes=limit if args.device == "cpu" else None,
        )
        if outcome.status == "ok":
            store.append(*outcome.result)
        else:
            env = environment(args.device) | {"threads": args.threads}
            message = outcome.message[-2000:]
            store.append(
                *(
                    record(case, metric, None, "", env, status=outcome.status, message=message)
                    for metric in METRICS_OF_KIND[case["kind"]]
                )
            )
            tqdm.write(f"[measure] {describe(case)}: {outcome.status}")
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def build_parser():
    parser = cli.parser("python -m bench.measure", __doc__)
    parser.add_argument("--preset", nargs="+", default=["paper", "quick"], choices=sorted(PRESETS),
                        help="presets the model cases are measured at")  # fmt: skip
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS), metavar="SPEC",
                        help="attention specs, each for encoder and decoder (attention.registry)")  # fmt: skip
    parser.add_argument("--k", type=cli.positive_int, nargs="*", default=[16, 32],
                        help="n_points (K) of every spec that has it; --k alone: each spec's "
                        "own")  # fmt: skip
    parser.add_argument("--hybrids", nargs="*", default=[], metavar="ENC/DEC",
                        help="encoder/decoder spec pairs, e.g. full/stdeform:mode=frames")  # fmt: skip
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS,
                        help="what to measure")  # fmt: skip
    parser.add_argument("--step-presets", nargs="*", default=["quick"], choices=sorted(PRESETS),
                        help="presets whose training step and evaluation are timed")  # fmt: skip
    parser.add_argument("--eval-frames", type=cli.positive_int, default=12,
                        help="frames of the video an evaluation pass is timed on")  # fmt: skip
    parser.add_argument("--device", type=cli.device, default="cpu", help="cpu, cuda or cuda:<i>")
    parser.add_argument("--threads", type=cli.positive_int, default=torch.get_num_threads(),
                        help="torch threads per case")  # fmt: skip
    parser.add_argument("--repeats", type=cli.positive_int, default=5,
                        help="timed passes per case at most (at least 2 are run)")  # fmt: skip
    parser.add_argument("--warmup", type=cli.nonnegative_int, default=1,
                        help="untimed passes after the first (peak-memory) pass")  # fmt: skip
    parser.add_argument("--case-seconds", type=cli.positive_float, default=30,
                        help="timing time per case: repeats (>= 2) and warm-up are cut to about "
                        "this long; the first pass, which measures peak memory, always warms up")  # fmt: skip
    parser.add_argument("--timeout", type=cli.positive_float, default=900, help="seconds per case")
    parser.add_argument("--retry-errors", action="store_true", help="rerun cases that errored")
    parser.add_argument("--out", default="results", help="results folder")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cases = model_cases(args) + (scaling_cases(args) if "scaling" in args.metrics else [])
    store = ResultsStore(cli.writable_dir(args.out) / "measurements.jsonl")
    counts = run_cases(cases, store, args)
    print(f"[measure] {counts} -> {store.path}")
    errors = {status: n for status, n in counts.items() if status.startswith("error")}
    if errors:
        print(f"[measure] cases that errored: {errors} (details: {store.path})", file=sys.stderr)
        sys.exit(1)
    return counts


if __name__ == "__main__":
    cli.run("python -m bench.measure", main)
