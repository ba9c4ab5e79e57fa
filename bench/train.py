"""Training with periodic evaluation, checkpoint/resume and DistributedDataParallel.

    python -m bench.train --name stdeform-k16 --backend stdeform --set n_points=16 \
        --iterations 1200 --eval-every 150 --out results/runs
    torchrun --nproc_per_node 2 -m bench.train ...        # DDP: gloo on CPU, nccl on GPU

Every ``eval_every`` iterations (and at the end) the model is evaluated on the val split with the
suite's YouTube-VIS evaluator, a checkpoint is written, and one JSON line is appended to
``<out>/<run>/log.jsonl``:

    {"run", "iteration", "epoch", "wall_s", "device_hours", "device_name", "n_devices",
     "losses": {name: mean since the last evaluation}, "metrics": {AP, AP50, AP75, AR1, AR10, ...},
     "lr"}

The clock includes evaluation. An epoch is one clip per training video. device_hours =
wall-clock x number of processes (devices), labelled with the device name. At the end
``final.json`` holds the status, last metrics, peak memory and the environment (commit, versions,
threads, date) the run was trained in.

Reproducibility: every iteration re-seeds torch, numpy and random from (seed, iteration, rank), and
the clip order is a per-epoch permutation drawn from (seed, epoch), so a run killed at any moment
resumes from its last checkpoint and writes the same log as an uninterrupted run (wall-clock
aside), losing at most one evaluation interval of work.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from bench.convergence import read_log
from bench.data.dataset import YTVISClipDataset, collate_clips
from bench.data.source import resolve_data
from bench.data.transforms import build_transforms
from bench.environment import device_name, environment
from bench.evaluation import evaluate
from models import InferenceRunner, build_model, build_optimizer

LOG_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


@dataclasses.dataclass
class TrainConfig:
    """One training run: model, data, schedule and where its files go."""

    run: str
    out: str = "results/runs"  # the run's files go to <out>/<run>/
    preset: str = "quick"
    backend: str = "stdeform"
    overrides: dict = dataclasses.field(default_factory=dict)  # models.build_model overrides
    # "synthetic", "synthetic:FIELD=VALUE,..." or a YouTube-VIS directory (see data_paths)
    data: str = "synthetic"
    iterations: int = 1500
    eval_every: int = 250
    # the learning rate drops x0.1 after this fraction of the iterations, or of the wall-clock
    # budget when there is one (a budgeted run is then not bit-reproducible: it depends on speed)
    lr_drop: float = 2 / 3
    budget_minutes: float | None = None  # stop (with a final evaluation) past this wall-clock
    batch_size: int | None = None  # global clips per iteration; default: the preset's
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    val_videos: int | None = None  # evaluate on the first n val videos only
    debug_params_dir: str | None = None  # save parameters and gradients after every step (tests)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.run


# ----------------------------------------------------------------------------- distributed


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


# ----------------------------------------------------------------------------- data


def data_paths(config: TrainConfig) -> dict[str, Path]:
    """Image roots and annotation files of the train and val splits (bench.data.resolve_data):
    "synthetic" is the suite's synthetic set (bench.data.synthetic.DEFAULT_SPEC),
    "synthetic:FIELD=VALUE,..." another spec, each in data/synthetic-<spec name> and generated
    there when absent; any other value is a directory in the YouTube-VIS layout."""
    return resolve_data(config.data)


def seed_iteration(seed: int, iteration: int, stream: int) -> None:
    """Seed torch, numpy and random from (seed, iteration, stream). Stream j >= 0 loads the j-th
    clip of the global batch (whichever process loads it, so DDP sees the same clips as one
    process); stream -1 - rank drives the model's randomness (dropout) in process rank."""
    value = (seed * 1_000_003 + iteration * 7919 + stream * 31) % (2**31)
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def clip_indices(seed: int, iteration: int, global_batch: int, size: int) -> list[int]:
    """The dataset indices of one iteration's global batch: consecutive slots of per-epoch
    permutations drawn from (seed, epoch)."""
    indices = []
    for slot in range(iteration * global_batch, (iteration + 1) * global_batch):
        epoch, position = divmod(slot, size)
        generator = torch.Generator().manual_seed(seed * 10_007 + epoch)
        indices.append(int(torch.randperm(size, generator=generator)[position]))
    return indices


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_model(model, postprocess, val: YTVISClipDataset, config, rank, world, device):
    """YouTube-VIS metrics on the val videos (inference split across ranks, scored on rank 0)."""
    model.eval()
    transforms = build_transforms(False, model.preset.short_side, model.preset.max_size)
    runner = InferenceRunner(model, postprocess)
    video_ids = val.video_ids[: config.val_videos] if config.val_videos else val.video_ids
    results = []
    for video_id in video_ids[rank::world]:
        length = val.ytvis.videos[video_id]["length"]
        frames = list(range(length))
        clip = val.load_clip(video_id, frames)
        target = val.load_target(video_id, frames)
        clip, target = transforms(clip, target)
        orig = tuple(int(s) for s in target["orig_size"])
        with autocast(device):
            results += runner.run_video(clip.to(device), orig, video_id)
    if world > 1:
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(results, gathered, dst=0)
        results = [r for part in gathered for r in part] if rank == 0 else []
    metrics = None
    if rank == 0:
        gt = _subset_ground_truth(val, video_ids) if config.val_videos else val.ytvis
        metrics = evaluate(gt, results)
    if world > 1:
        box = [metrics]
        dist.broadcast_object_list(box, src=0)
        metrics = box[0]
    model.train()
    return metrics


def _subset_ground_truth(val: YTVISClipDataset, video_ids: list[int]) -> dict:
    """The val annotation dict restricted to some videos (evaluation on a subset)."""
    ytvis = val.ytvis
    return {
        "videos": [ytvis.videos[v] for v in video_ids],
        "annotations": [a for v in video_ids for a in ytvis.anns_by_video[v]],
        "categories": list(ytvis.categories.values()),
    }


def autocast(device: torch.device):
    """bfloat16 autocast on GPUs, nothing on the CPU (reproducible float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_log(path: Path, lines: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))
    os.replace(tmp, path)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------- training


def train(config: TrainConfig) -> dict:
    """Train (or resume) one run; returns the final summary (also written to final.json)."""
    rank, world = init_distributed(config.device)
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = config.run_dir
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))

    paths = data_paths(config) if rank == 0 else None
    if world > 1:
        box = [paths]
        dist.broadcast_object_list(box, src=0)
        paths = box[0]
    seed_iteration(config.seed, 0, -1)  # identical initial weights on every rank
    probe = YTVISClipDataset(paths["train_images"], paths["train_annotations"], 1, train=True)
    model, criterion, postprocess = build_model(
        config.preset,
        config.backend,
        num_classes=len(probe.cat_ids),
        category_ids=probe.cat_ids,
        **config.overrides,
    )
    preset = model.preset
    train_set = YTVISClipDataset(
        paths["train_images"],
        probe.ytvis,
        preset.num_frames,
        build_transforms(True, preset.short_side, preset.max_size),
        train=True,
    )
    val_set = YTVISClipDataset(
        paths["val_images"], paths["val_annotations"], preset.num_frames, train=False
    )
    model.to(device)
    criterion.to(device)
    optimizer = build_optimizer(model, preset)
    lr_dropped_at = None  # the iteration after which the learning rate fell x0.1
    global_batch = config.batch_size or preset.batch_size
    if global_batch % world:
        raise ValueError(f"batch_size={global_batch} is not divisible by {world} processes")
    local_batch = global_batch // world

    log_path, ckpt_path = run_dir / "log.jsonl", run_dir / "checkpoint.pt"
    iteration, wall_before = 0, 0.0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # holds the current learning rates
        iteration, wall_before = state["iteration"], state["wall_s"]
        lr_dropped_at = state["lr_dropped_at"]
        if rank == 0:  # the log line of the checkpoint may not have been written before a kill
            lines = [line for line in read_log(log_path) if line["iteration"] <= iteration]
            if state.get("log_line") and (not lines or lines[-1]["iteration"] < iteration):
                lines.append(state["log_line"])
            write_log(log_path, lines)
    elif rank == 0 and log_path.exists():
        log_path.unlink()  # no checkpoint: start the log afresh

    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # e.g. the reference-point head under full attention
        )
    model.train()
    weights = criterion.weight_dict
    name = device_name(str(device))
    started = time.perf_counter()
    budget_s = config.budget_minutes * 60 if config.budget_minutes else None
    loss_sums: dict[str, float] = {}
    loss_count = 0
    last_eval_s = 0.0
    status = "ok"
    progress = tqdm(
        total=config.iterations,
        initial=iteration,
        desc=config.run,
        disable=rank != 0,
        dynamic_ncols=True,
    )
    while iteration < config.iterations:
        batch = clip_indices(config.seed, iteration, global_batch, len(train_set))
        items = []
        for slot in range(rank * local_batch, (rank + 1) * local_batch):
            seed_iteration(config.seed, iteration, slot)
            items.append(train_set[batch[slot]])
        seed_iteration(config.seed, iteration, -1 - rank)
        clips, padding_mask, targets = collate_clips(items)
        clips, padding_mask = clips.to(device), padding_mask.to(device)
        targets = [
            {k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets
        ]
        with autocast(device):
            outputs = ddp_model(clips, padding_mask)
        losses = criterion(outputs, targets)
        loss = sum(weights[k] * v for k, v in losses.items() if k in weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"run {config.run}: loss is {loss.item()} at iteration {iteration}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if preset.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), preset.clip_max_norm)
        optimizer.step()
        iteration += 1
        wall = wall_before + time.perf_counter() - started
        if lr_dropped_at is None and (
            wall >= config.lr_drop * budget_s
            if budget_s is not None
            else iteration >= config.lr_drop * config.iterations
        ):
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
            lr_dropped_at = iteration
        progress.update(1)
        for key, value in (("loss", loss), *losses.items()):
            loss_sums[key] = loss_sums.get(key, 0.0) + float(value)
        loss_count += 1
        if config.debug_params_dir:
            debug = Path(config.debug_params_dir)
            debug.mkdir(parents=True, exist_ok=True)
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
            saved = {  # the parameters after the step, and the (clipped) gradients it applied
                "params": torch.cat([p.detach().flatten().cpu() for p in model.parameters()]),
                "grads": torch.cat([g.flatten().cpu() for g in grads]),
            }
            torch.save(saved, debug / f"rank{rank}_iter{iteration}.pt")

        out_of_time = budget_s is not None and wall + last_eval_s >= budget_s
        if iteration % config.eval_every == 0 or iteration == config.iterations or out_of_time:
            eval_started = time.perf_counter()
            metrics = evaluate_model(model, postprocess, val_set, config, rank, world, device)
            last_eval_s = time.perf_counter() - eval_started
            wall = wall_before + time.perf_counter() - started
            line = {
                "run": config.run,
                "iteration": iteration,
                "epoch": iteration * global_batch / len(train_set),
                "wall_s": wall,
                "device_hours": wall * world / 3600,
                "device_name": name,
                "n_devices": world,
                "losses": {k: v / max(loss_count, 1) for k, v in loss_sums.items()},
                "metrics": {k: metrics[k] for k in LOG_METRICS if k in metrics},
                "lr": optimizer.param_groups[0]["lr"],
                "lr_dropped_at": lr_dropped_at,
            }
            loss_sums, loss_count = {}, 0
            if rank == 0:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_dropped_at": lr_dropped_at,
                    "iteration": iteration,
                    "wall_s": wall,
                    "log_line": line,
                }
                save_checkpoint(ckpt_path, state)  # checkpoint first, then the log line
                with open(log_path, "a") as f:
                    f.write(json.dumps(line) + "\n")
                progress.set_postfix(AP=f"{line['metrics'].get('AP', float('nan')):.3f}")
            if world > 1:
                dist.barrier()
            wall = wall_before + time.perf_counter() - started
            if (
                budget_s is not None
                and wall + last_eval_s >= budget_s
                and iteration < config.iterations
            ):
                status = "budget"  # no time for another evaluation: this one is the last
                break
    progress.close()
    lines = read_log(log_path) if rank == 0 else []
    summary = {
        "run": config.run,
        "status": status,  # "ok": all iterations; "budget": stopped by the wall-clock budget
        "iterations": iteration,
        "epochs": iteration * global_batch / len(train_set),
        "wall_s": lines[-1]["wall_s"] if lines else None,
        "device_hours": lines[-1]["device_hours"] if lines else None,
        "device_name": name,
        "n_devices": world,
        "metrics": lines[-1]["metrics"] if lines else {},
        "peak_memory_MiB": peak_memory_mib(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "attention": model.attention_options(),
        "backbone": preset.backbone,
        # where the run was trained: summaries made later (bench.ablate) keep this provenance
        "environment": environment(str(device)) | {"device_count": world},
    }
    if rank == 0:
        (run_dir / "final.json").write_text(json.dumps(summary, indent=2))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return summary


def train_from_dict(config: dict) -> dict:
    """Entry point for bench.isolation (one run per subprocess): a TrainConfig as a dict."""
    return train(TrainConfig(**config))


# ----------------------------------------------------------------------------- CLI


def parse_overrides(items: list[str]) -> dict:
    """--set name=value pairs; values parsed as JSON where possible (numbers, lists, null)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects name=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--name", dest="run", required=True, help="run name (its directory under --out)"
    )
    parser.add_argument("--out", default="results/runs")
    parser.add_argument("--preset", default="quick", choices=["quick", "paper"])
    parser.add_argument("--backend", default="stdeform")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="model overrides, e.g. n_points=32 mode=frames attention_impl=math",
    )
    parser.add_argument(
        "--data", default="synthetic", help="'synthetic' or a YouTube-VIS directory"
    )
    parser.add_argument("--iterations", type=int, default=TrainConfig.iterations)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--val-videos", type=int, default=None)
    parser.add_argument(
        "--debug-params-dir", default=None, help="save parameters and gradients after every step"
    )
    args = parser.parse_args(argv)
    config = TrainConfig(
        run=args.run,
        out=args.out,
        preset=args.preset,
        backend=args.backend,
        overrides=parse_overrides(args.set),
        data=args.data,
        iterations=args.iterations,
        eval_every=args.eval_every,
        budget_minutes=args.budget_minutes,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        val_videos=args.val_videos,
        debug_params_dir=args.debug_params_dir,
    )
    summary = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
