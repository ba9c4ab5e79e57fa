"""``python -m bench.measure``: FLOPs, FPS, peak memory and scaling sweeps into results/.

    python -m bench.measure --preset paper quick --backends full:sdpa full:math stdeform \
        --metrics flops fps memory scaling --device cpu --out results/

Backends are written ``name[:option]``: ``full:sdpa``, ``full:math``, ``stdeform`` (mode 3d, the
preset's K), ``stdeform:frames``, ``stdeform:frame``, ``stdeform:3d:16`` (mode and K).
``fps`` and ``memory`` come from one inference case per (preset, backend): its first pass
measures peak memory and warms up, then up to --repeats timed passes (at least 2), cut to about
--case-seconds of timing so that the paper preset's ~17 s CPU passes stay affordable.
Every case runs in its own subprocess with a time limit; its records (or its failure: OOM,
timeout, error) are appended to <out>/measurements.jsonl; a rerun skips finished cases.
Scaling: one encoder layer (d=384, 8 heads, FFN 2048, K=32: the paper's) over T in
{4, 8, 16, 32, 64} at 10x17 and over H x W at T = 8.
"""

import argparse
import os
from pathlib import Path

import torch
from tqdm import tqdm

from bench.environment import environment
from bench.isolation import run_isolated
from bench.store import ResultsStore, case_id, record

SCALING_T = (4, 8, 16, 32, 64)
SCALING_HW = ((5, 9), (10, 17), (15, 26), (20, 34), (30, 51))
SCALING_LAYER = {"d_model": 384, "n_heads": 8, "dim_feedforward": 2048}
METRICS_OF_KIND = {
    "flops": ("macs",),
    "inference": ("fps", "peak_memory"),
    "scaling": ("time", "peak_memory"),
}


def parse_backend(spec: str) -> tuple[str, dict, dict]:
    """'full:math' -> ("full", build_model overrides, options for the results)."""
    name, *rest = spec.split(":")
    if name == "full":
        impl = rest[0] if rest else "sdpa"
        return name, {"attention_impl": impl}, {"impl": impl}
    if name == "stdeform":
        mode = rest[0] if rest else "3d"
        overrides = {"mode": mode}
        if len(rest) > 1:
            overrides["n_points"] = int(rest[1])
        return name, overrides, {"mode": mode, "K": overrides.get("n_points")}
    raise ValueError(f"unknown backend spec {spec!r} (full[:sdpa|math], stdeform[:mode[:K]])")


def model_cases(args) -> list[tuple[str, dict]]:
    """(case function, case) for every requested model-level measurement."""
    from models import get_preset

    kinds = []
    if "flops" in args.metrics:
        kinds.append("flops")
    if {"fps", "memory"} & set(args.metrics):
        kinds.append("inference")
    cases = []
    for preset_name in args.preset:
        preset = get_preset(preset_name)
        for spec in args.backends:
            backend, overrides, options = parse_backend(spec)
            if backend == "stdeform":
                options["K"] = overrides.get("n_points", preset.n_points)
            for kind in kinds:
                case = {
                    "kind": kind,
                    "preset": preset_name,
                    "backend": backend,
                    "options": options,
                    "overrides": overrides,
                    "device": args.device,
                    "threads": args.threads,
                    "input": {
                        "T": preset.num_frames,
                        "height": preset.short_side,
                        "width": preset.max_size,
                    },
                }
                if kind == "inference":
                    case.update(warmup=args.warmup, repeats=args.repeats, seconds=args.case_seconds)
                cases.append((f"bench.measure.cases:{kind}_case", case))
    return cases


def scaling_cases(args) -> list[tuple[str, dict]]:
    points = [("T", T, 10, 17) for T in SCALING_T] + [("HW", 8, H, W) for H, W in SCALING_HW]
    cases = []
    for spec in args.backends:
        backend, _, options = parse_backend(spec)
        if backend == "stdeform":
            options["K"] = options["K"] or 32
            if options["mode"] == "frames":
                continue  # frames mode's cost grows with T by design; not a token-count sweep
        for sweep, T, H, W in points:
            case = {
                "kind": "scaling",
                "preset": None,
                "backend": backend,
                "options": options,
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


def run_cases(cases, store: ResultsStore, args) -> dict[str, int]:
    """Run the unfinished cases one by one, isolated; record results or failures."""
    finished = store.finished(retry_errors=args.retry_errors)
    todo = [(target, case) for target, case in cases if case_id(case) not in finished]
    counts = {"skipped": len(cases) - len(todo)}
    limit = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.85)
    progress = tqdm(todo, desc="measure", unit="case", dynamic_ncols=True)
    for target, case in progress:
        progress.set_postfix_str(
            f"{case['kind']} {case.get('preset') or case.get('tokens')} "
            f"{case['backend']} {case['options']}"
        )
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
            store.append(
                *(
                    record(
                        case,
                        metric,
                        None,
                        "",
                        env,
                        status=outcome.status,
                        message=outcome.message[-2000:],
                    )
                    for metric in METRICS_OF_KIND[case["kind"]]
                )
            )
            tqdm.write(
                f"[measure] {case['kind']} {case['backend']} {case['options']}: {outcome.status}"
            )
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", nargs="+", default=["paper", "quick"], choices=["paper", "quick"]
    )
    parser.add_argument("--backends", nargs="+", default=["full:sdpa", "full:math", "stdeform"])
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["flops", "fps", "memory", "scaling"],
        choices=["flops", "fps", "memory", "scaling"],
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--case-seconds",
        type=float,
        default=30,
        help="timing time per case: repeats (>= 2) and warm-up are cut to about this long; "
        "the first pass, which measures peak memory, always warms up",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per case")
    parser.add_argument("--retry-errors", action="store_true", help="rerun cases that errored")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    cases = model_cases(args) + (scaling_cases(args) if "scaling" in args.metrics else [])
    store = ResultsStore(Path(args.out) / "measurements.jsonl")
    counts = run_cases(cases, store, args)
    print(f"[measure] {counts} -> {store.path}")
    return counts


if __name__ == "__main__":
    main()
