"""Micro-benchmark of the STDeformAttn op: pure-PyTorch reference vs compiled kernel, with full
attention (scaled_dot_product_attention over the same tokens) for context.

Run from the repository root::

    python -m bench.op_bench                                  # CPU, quick and paper shapes
    python -m bench.op_bench --device cuda                    # GPU; adds float16/bfloat16 kernels
    python -m bench.op_bench --shapes paper --threads 2 --out results/op_bench.csv
    python -m bench.op_bench --repeat 3                       # best of 3 on a noisy machine

Shapes (one level, Q = T*H*W queries, i.e. every token queries, as in the encoder):
``quick`` N=1, M=8, D=32, T=8, H=W=16, K=16; ``paper`` N=1, M=8, D=48, T=36, H=10, W=17, K=32.
Operations: forward, and forward+backward (gradients of value, loc and weights; q, k, v for SDPA).
Each time is the median of torch.utils.benchmark.Timer.blocked_autorange (label = operation,
sub_label = shape, description = implementation, as xformers does), run on --threads threads.
The table gives the median, the interquartile range and the speed-up over the reference; the
device name, torch version and thread count are printed with it and stored in the CSV.
Needs only torch; pandas (and tabulate, for a markdown table) are used when installed.
"""

import argparse
import csv
import dataclasses
import logging
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import attention
from bench.environment import environment


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    N: int
    M: int
    D: int
    T: int
    H: int
    W: int
    K: int

    @property
    def tokens(self) -> int:
        return self.T * self.H * self.W

    def __str__(self) -> str:
        return (
            f"{self.name} (N={self.N} M={self.M} D={self.D} T={self.T} {self.H}x{self.W} "
            f"K={self.K} Q={self.tokens})"
        )


SHAPES = {
    "quick": Shape("quick", N=1, M=8, D=32, T=8, H=16, W=16, K=16),
    "paper": Shape("paper", N=1, M=8, D=48, T=36, H=10, W=17, K=32),
}
OPERATIONS = ("forward", "forward+backward")


def stdeform_inputs(shape: Shape, device: str, dtype: torch.dtype, seed: int = 0):
    """value, shapes, start, loc (uniform in [0, 1]) and softmax weights; one level, Q = S."""
    gen = torch.Generator().manual_seed(seed)
    N, M, D, K, S = shape.N, shape.M, shape.D, shape.K, shape.tokens
    value = torch.randn(N, S, M, D, generator=gen)
    loc = torch.rand(N, S, M, 1, K, 3, generator=gen)
    weights = torch.randn(N, S, M, 1, K, generator=gen).softmax(-1)
    shapes = torch.tensor([[shape.T, shape.H, shape.W]])
    start = torch.zeros(1, dtype=torch.int64)
    cast = lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    return tuple(cast(t) for t in (value, shapes, start, loc, weights))


def sdpa_inputs(shape: Shape, device: str, dtype: torch.dtype, seed: int = 0):
    """q, k, v (batch N, M heads, S tokens, D channels)."""
    gen = torch.Generator().manual_seed(seed)
    size = (shape.N, shape.M, shape.tokens, shape.D)
    return tuple(torch.randn(size, generator=gen).to(device, dtype) for _ in range(3))


def statements(shape: Shape, device: str, dtype: torch.dtype, kernel_name: str):
    """(implementation, operation) -> a zero-argument callable to time."""
    value, shapes, start, loc, weights = stdeform_inputs(shape, device, dtype)
    grad = torch.randn(shape.N, shape.tokens, shape.M * shape.D).to(device, dtype)
    q, k, v = sdpa_inputs(shape, device, dtype)
    grad_sdpa = torch.randn_like(q)
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
    qkv = [t.detach().clone().requires_grad_() for t in (q, k, v)]

    def stdeform(impl, backward):
        if not backward:
            return lambda: attention.stdeform_attn(value, shapes, start, loc, weights, impl=impl)
        v_, l_, w_ = leaves
        return lambda: torch.autograd.grad(
            attention.stdeform_attn(v_, shapes, start, l_, w_, impl=impl), leaves, grad
        )

    def sdpa(backward):
        if not backward:
            return lambda: F.scaled_dot_product_attention(q, k, v)
        return lambda: torch.autograd.grad(F.scaled_dot_product_attention(*qkv), qkv, grad_sdpa)

    result = {}
    for operation, backward in zip(OPERATIONS, (False, True), strict=True):
        if dtype in (torch.float32, torch.float64):
            result["reference", operation] = stdeform("reference", backward)
        result[kernel_name, operation] = stdeform("op", backward)
        result["sdpa (full attention)", operation] = sdpa(backward)
    return result


def measure(
    device: str, shapes: list[str], threads: int, min_run_time: float, repeat: int = 1
) -> list[dict]:
    """Time every implementation, operation and shape on one device; one row each.

    With repeat > 1 every statement is timed that many times, interleaved, and the lowest median
    is kept (a shared machine's noise only ever adds time).
    """
    # torch.utils.benchmark imports cpp_extension, whose "No CUDA runtime is found" is noise here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    kernel_name = attention.stdeform_impl(device)
    if kernel_name == "reference":
        kernel_name = "kernel (unavailable: reference)"
    dtypes = [torch.float32]
    if torch.device(device).type == "cuda":
        dtypes += [torch.float16, torch.bfloat16]
    env = environment(device)
    rows = []
    for name in shapes:
        shape = SHAPES[name]
        for dtype in dtypes:
            fns = statements(shape, device, dtype, kernel_name)
            best = {}
            for _ in range(repeat):
                for (impl, operation), fn in fns.items():
                    fn()  # warm up (first-call allocations, SDPA backend choice)
                    timer = Timer(
                        stmt="fn()",
                        globals={"fn": fn},
                        label=operation,
                        sub_label=str(shape),
                        description=impl,
                        num_threads=threads,
                    )
                    m = timer.blocked_autorange(min_run_time=min_run_time)
                    if (impl, operation) not in best or m.median < best[impl, operation].median:
                        best[impl, operation] = m
                    print(
                        f"  {name} {dtype} {operation:16s} {impl:32s} {m.median * 1e3:10.2f} ms",
                        file=sys.stderr,
                    )
            for (impl, operation), m in best.items():
                rows.append(
                    {
                        "device": device,
                        "device_name": env["device_name"],
                        "torch": env["torch"],
                        "threads": threads,
                        "shape": name,
                        "dtype": str(dtype).removeprefix("torch."),
                        "operation": operation,
                        "implementation": impl,
                        "median_ms": m.median * 1e3,
                        "iqr_ms": m.iqr * 1e3,
                        "runs": len(m.times),
                    }
                )
    # Speed-up over the float32 reference of the same device, shape and operation.
    for row in rows:
        ref = [
            r["median_ms"]
            for r in rows
            if r["implementation"] == "reference"
            and (r["device"], r["shape"], r["operation"])
            == (row["device"], row["shape"], row["operation"])
        ]
        row["speedup_vs_reference"] = ref[0] / row["median_ms"] if ref else math.nan
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown via pandas + tabulate, else pandas' to_string, else plain columns."""
    columns = ["shape", "dtype", "operation", "implementation", "median_ms", "iqr_ms"]
    columns += ["speedup_vs_reference"]
    try:
        import pandas as pd
    except ImportError:
        lines = ["  ".join(columns)]
        for row in rows:
            lines.append(
                "  ".join(
                    f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns
                )
            )
        return "\n".join(lines)
    frame = pd.DataFrame(rows)[columns]
    try:
        return frame.to_markdown(index=False, floatfmt=".2f")
    except ImportError:  # no tabulate
        return frame.to_string(index=False, float_format=lambda x: f"{x:.2f}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing")
    parser.add_argument(
        "--repeat", type=int, default=1, help="time everything this often, keep the best median"
    )
    parser.add_argument("--out", type=Path, help="also write the rows to this CSV file")
    args = parser.parse_args(argv)
    if "cuda" in args.device and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    info = attention.register_op()
    rows = []
    for device in args.device:
        env = environment(device)
        print(
            f"\n## STDeformAttn op on {device}: {env['device_name']}, torch {env['torch']}, "
            f"{args.threads} threads, kernel: {attention.stdeform_impl(device)}"
            + (f" ({'; '.join(info.notes)})" if info.notes else "")
        )
        device_rows = measure(device, args.shapes, args.threads, args.min_run_time, args.repeat)
        print(format_table(device_rows))
        rows += device_rows
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nwrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
