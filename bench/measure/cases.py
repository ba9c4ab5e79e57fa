"""The benchmark cases. Each runs inside its own subprocess (bench.isolation) and returns records.

- ``flops_case``: fvcore MACs per component (backbone, encoder, decoder, heads) and for one
  encoder layer and its attention; FlopCounterMode's total (halved to MACs); the backends'
  analytic formulas for the attention modules.
- ``inference_case``: frames per second (T x clips/s, batch 1, model time only, warm-up,
  synchronised, median and IQR over repeats) and peak memory (CUDA max_memory_allocated after a
  reset, or on the CPU the subprocess's peak RSS above its baseline before the model runs).
- ``step_case``: one training step (forward, losses, backward, clipping, AdamW step) on a random
  batch of the preset's size (median and IQR), and one evaluation pass over a random video of
  ``eval_frames`` frames (inference and postprocess) — the two times that turn a run's iterations
  and evaluations into device-hours on this device (bench.convergence, the report).
- ``scaling_case``: time and peak memory of one encoder layer at a given T x H x W.

A case's identity (its ``case`` dict) holds everything that determines the measurement; a model
case names its attention as bench.method's fields (backend, options, decoder).
"""

import resource
import statistics
import time
from pathlib import Path

import torch

from bench.environment import environment
from bench.measure.flops import count_flop_counter, count_fvcore, encoder_layer_macs
from bench.store import record

MIB = 2**20


def _setup(case: dict) -> tuple[torch.device, dict]:
    """Threads and device of a case; the op's kernels are loaded here, never inside a timing.

    Returns the device and the extra fields every record of the case carries (for stdeform,
    which implementation of the op ran: "cpu kernel", "cuda kernel" or "reference").
    """
    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but CUDA is not available")
    extra = {}
    decoder = case.get("decoder") or {}
    if "stdeform" in (case["backend"], decoder.get("backend")):
        from attention.stdeform_op import stdeform_impl

        extra["op_impl"] = stdeform_impl(device)
    return device, extra


def case_specs(case: dict) -> dict:
    """{"encoder": spec, "decoder": spec} of a model case's method fields."""
    from attention.registry import parse_backend
    from bench.method import implied_decoder

    encoder = parse_backend({"backend": case["backend"], "options": case["options"]})
    decoder = case.get("decoder")
    return {
        "encoder": encoder,
        "decoder": parse_backend(decoder) if decoder else implied_decoder(encoder),
    }


def _model(case: dict, device: torch.device, train: bool = False):
    from models import build_model

    specs = case_specs(case)
    torch.manual_seed(0)
    model, criterion, postprocess = build_model(
        case["preset"],
        encoder=specs["encoder"],
        decoder=specs["decoder"],
        **case.get("overrides", {}),
    )
    model.to(device).train(train)
    return model, criterion.to(device), postprocess


def model_input(model, T: int | None, height: int | None, width: int | None, device):
    """A batch-1 clip at the preset's size (short side x max size) unless given."""
    preset = model.preset
    T = T or preset.num_frames
    height, width = height or preset.short_side, width or preset.max_size
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(1, T, 3, height, width, generator=generator).to(device)
    padding = torch.zeros(1, height, width, dtype=torch.bool, device=device)
    return clips, padding


def _status_mib(field: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc/self/status, in MiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def flops_case(case: dict) -> list[dict]:
    """MACs of a model by component, cross-checked (see the module docstring)."""
    device, _ = _setup(case)
    model, _, _ = _model(case, device)
    inputs = model_input(model, **case["input"], device=device)
    env = environment(str(device))

    def gmacs(macs: float, component: str, counter: str, **extra) -> dict:
        return record(case, "macs", macs / 1e9, "GMAC", env, component=component, counter=counter,
                      **extra)  # fmt: skip

    counted = count_fvcore(model, inputs)
    modules = counted.by_module
    parts = {
        "backbone": modules.get("backbone", 0),
        "encoder": modules.get("transformer.encoder", 0),
        "decoder": modules.get("transformer.decoder", 0),
    }
    # input projections, pixel decoder, class/box/mask heads and the mask product
    parts["heads"] = counted.total_macs - sum(parts.values())
    records = [gmacs(counted.total_macs, "model", "fvcore", unsupported=counted.unsupported)]
    records += [gmacs(value, name, "fvcore") for name, value in parts.items()]
    flops, _ = count_flop_counter(model, inputs)
    records.append(gmacs(flops / 2, "model", "flop_counter"))
    return records + encoder_records(model, inputs, modules, gmacs)


def encoder_records(model, inputs, modules: dict, gmacs) -> list[dict]:
    """One encoder layer and the attention of all encoder layers, counted by fvcore and by the
    backends' formulas (none when the model has no encoder layer)."""
    encoder = model.transformer.encoder
    if not len(encoder):
        return []
    shapes = _token_shapes(model, inputs)
    tokens = sum(t * h * w for t, h, w in shapes)
    ffn = encoder[0].ffn.linear1
    layer = encoder_layer_macs(
        encoder[0].self_attn, tokens, shapes, ffn.in_features, ffn.out_features
    )
    counted = sum(modules.get(f"transformer.encoder.{i}.self_attn", 0) for i in range(len(encoder)))
    analytic = sum(block.self_attn.macs(tokens, shapes) for block in encoder)
    return [
        gmacs(modules.get("transformer.encoder.0", 0), "encoder_layer", "fvcore"),
        gmacs(sum(layer.values()), "encoder_layer", "analytic",
              breakdown={k: v / 1e9 for k, v in layer.items()}),
        gmacs(counted, "encoder_attention", "fvcore", layers=len(encoder)),
        gmacs(analytic, "encoder_attention", "analytic", layers=len(encoder)),
    ]  # fmt: skip


def _token_shapes(model, inputs) -> list[tuple[int, int, int]]:
    """(T, H_l, W_l) of every transformer level for this input (from a backbone pass)."""
    clips, _ = inputs
    with torch.no_grad():
        levels, _ = model.backbone(clips[0, :1])
    return [(clips.shape[1], *level.shape[-2:]) for level in levels]


def _timing_plan(first_pass_s: float, case: dict) -> tuple[int, int]:
    """(extra warm-up passes, timed repeats) for a case whose first (peak-memory) pass took
    ``first_pass_s``: the first pass always warms up; further warm-up and repeats are capped so
    that timing takes about ``case["seconds"]`` (at least 2 repeats, at most ``case["repeats"]``).
    """
    passes = int(case.get("seconds", float("inf")) // max(first_pass_s, 1e-9))
    repeats = max(2, min(case["repeats"], passes))
    warmup = max(0, min(case["warmup"], passes - repeats))
    return warmup, repeats


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(function, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Wall-clock seconds of ``function()`` per repeat, synchronised, after warm-up.

    A plain loop rather than torch.utils.benchmark.Timer: Timer.timeit runs two untimed warm-up
    calls on every call, which triples the cost of a paper-preset pass (~17 s on 2 CPU cores)
    and blocked_autorange cannot promise a minimum number of repeats.
    """
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        started = time.perf_counter()
        function()
        _synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def _timed_with_peak(function, device: torch.device, case: dict) -> tuple[dict, float, dict]:
    """Peak memory of the first call (which warms up), then the timing summary of the rest."""
    baseline, method = _peak_memory_start(device)
    started = time.perf_counter()
    function()  # the first pass defines the peak (allocator and caches warm up here)
    _synchronize(device)
    first_pass_s = time.perf_counter() - started
    peak = _peak_memory_end(device, baseline, method)
    warmup, repeats = _timing_plan(first_pass_s, case)
    summary = _summary(_time(function, device, warmup, repeats))
    summary.update(warmup=warmup + 1, first_pass_s=first_pass_s)
    return summary, peak, {"method": method, "baseline_MiB": baseline}


def _summary(times: list[float]) -> dict:
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "median_s": statistics.median(times),
        "iqr_s": quartiles[2] - quartiles[0],
        "repeats": len(times),
        "times_s": times,
    }


def _peak_memory_start(device: torch.device) -> tuple[float, str]:
    """Reset the peak counters; returns the baseline (MiB) and the method's name.

    CUDA: max_memory_allocated after reset_peak_memory_stats. CPU: the process's peak resident
    memory (the kernel's high-water mark, which ru_maxrss reports) reset to the current RSS so
    that import and model-building peaks do not mask the forward's; ru_maxrss minus the RSS
    before the forward where the reset is unavailable.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / MIB, "cuda_max_memory_allocated"
    if _reset_peak_rss() and _status_mib("VmHWM") is not None:
        return _status_mib("VmRSS"), "peak_rss_above_baseline"
    return _status_mib("VmRSS") or 0.0, "ru_maxrss_above_baseline"


def _peak_memory_end(device: torch.device, baseline: float, method: str) -> float:
    """Peak MiB of what ran since _peak_memory_start (CPU: above the baseline RSS)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / MIB
    if method == "peak_rss_above_baseline":
        return _status_mib("VmHWM") - baseline
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline


def inference_case(case: dict) -> list[dict]:
    """FPS and peak memory of batch-1 inference (see the module docstring)."""
    device, extra = _setup(case)
    model, _, _ = _model(case, device)
    clips, padding = model_input(model, **case["input"], device=device)
    env = environment(str(device))

    def forward():
        with torch.no_grad():
            model(clips, padding)

    summary, peak, memory = _timed_with_peak(forward, device, case)
    T = clips.shape[1]
    return [
        record(case, "fps", T / summary["median_s"], "frames/s", env, T=T, **summary, **extra),
        record(case, "peak_memory", peak, "MiB", env, **memory, **extra),
    ]


def scaling_attention(case: dict):
    """The attention module of a scaling case: the backend over one (T, H, W) level."""
    from attention.registry import build_attention

    return build_attention(
        {"backend": case["backend"], "options": case["options"]},
        d_model=case["d_model"],
        n_heads=case["n_heads"],
        n_levels=1,
        n_frames=case["T"],
        layer_index=case.get("layer_index", 0),
    )


def scaling_case(case: dict) -> list[dict]:
    """Time and peak memory of one encoder layer (backend self-attention + FFN) at T x H x W."""
    from models.transformer import EncoderLayer

    device, extra = _setup(case)
    T, H, W, d = case["T"], case["H"], case["W"], case["d_model"]
    attention = scaling_attention(case)
    layer = EncoderLayer(attention, d, case["dim_feedforward"], 0.0).to(device).eval()
    S = T * H * W
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(1, S, d, generator=generator).to(device)
    pos = torch.randn(1, S, d, generator=generator).to(device)
    shapes = torch.tensor([[T, H, W]], device=device)
    start = torch.zeros(1, dtype=torch.long, device=device)
    t, y, x = torch.meshgrid(
        (torch.arange(T) + 0.5) / T,
        (torch.arange(H) + 0.5) / H,
        (torch.arange(W) + 0.5) / W,
        indexing="ij",
    )
    reference = torch.stack([x, y, t], -1).reshape(1, S, 1, 3).to(device)
    env = environment(str(device))

    def forward():
        with torch.no_grad():
            layer(src, pos, shapes, start, reference, None)

    summary, peak, memory = _timed_with_peak(forward, device, case)
    return [
        record(case, "time", summary["median_s"], "s", env, **summary, **extra),
        record(case, "peak_memory", peak, "MiB", env, **memory, **extra),
    ]


def random_targets(batch: int, T: int, height: int, width: int, num_classes: int, generator):
    """Targets of the dataset's format (bench.data.dataset) for a random batch: 1-3 rectangles per
    clip with random classes, visible in every frame, boxes from their masks."""
    from bench.data.dataset import masks_to_boxes

    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 4, (1,), generator=generator))
        masks = torch.zeros(n, T, height, width, dtype=torch.bool)
        for i in range(n):
            y0, x0 = (
                int(torch.randint(0, s // 2, (1,), generator=generator)) for s in (height, width)
            )
            h, w = (
                int(torch.randint(s // 8, s // 2, (1,), generator=generator))
                for s in (height, width)
            )
            masks[i, :, y0 : y0 + h, x0 : x0 + w] = True
        labels = torch.randint(0, num_classes, (n,), generator=generator)
        targets.append(
            {
                "labels": labels,
                "boxes": masks_to_boxes(masks),
                "masks": masks,
                "valid": masks.flatten(2).any(2),
            }
        )
    return targets


def step_case(case: dict) -> list[dict]:
    """One training step's time and one evaluation pass's time (see the module docstring)."""
    from bench.engine import build_optimizer, to_device, train_step
    from models import InferenceRunner

    device, extra = _setup(case)
    model, criterion, postprocess = _model(case, device, train=True)
    preset = model.preset
    batch_size = case.get("batch_size") or preset.batch_size
    generator = torch.Generator().manual_seed(0)
    T, height, width = preset.num_frames, preset.short_side, preset.max_size
    clips = torch.randn(batch_size, T, 3, height, width, generator=generator)
    padding = torch.zeros(batch_size, height, width, dtype=torch.bool)
    targets = random_targets(batch_size, T, height, width, preset.num_classes, generator)
    batch = to_device((clips, padding, targets), device)
    optimizer = build_optimizer(model, preset)
    env = environment(str(device))

    def step():
        train_step(model, criterion, optimizer, batch, device, preset.clip_max_norm)

    summary, _, _ = _timed_with_peak(step, device, case)
    model.eval()
    runner = InferenceRunner(model, postprocess)
    video = torch.randn(case["eval_frames"], 3, height, width, generator=generator).to(device)

    def evaluation():
        with torch.no_grad():
            runner.run_video(video, (height, width), video_id=0)

    eval_summary, _, _ = _timed_with_peak(evaluation, device, case)
    return [
        record(case, "step_time", summary["median_s"], "s", env, batch_size=batch_size,
               **summary, **extra),
        record(case, "eval_video_time", eval_summary["median_s"], "s", env,
               frames=case["eval_frames"], **eval_summary, **extra),
    ]  # fmt: skip
