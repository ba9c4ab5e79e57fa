"""One training step, one evaluation, the optimizer and the schedule (DETR's engine.py).

Everything here is a function of its arguments and of the iteration number, never of the clock:
``load_batch`` seeds each clip from (seed, iteration, slot) and draws the clip order from per-epoch
permutations of (seed, epoch); ``lr_factor`` drops the learning rate x0.1 after a fixed
iteration. So one (config, seed) gives the same parameters on the same device and thread count,
however fast the machine runs and whether or not the run was killed and resumed.
"""

import contextlib
import random

import numpy as np
import torch
import torch.distributed as dist

from bench.data.dataset import YTVISClipDataset, collate_clips
from bench.data.transforms import build_transforms
from bench.evaluation import evaluate
from models import InferenceRunner, Preset, VisModel

LR_DROP_FACTOR = 0.1
LOG_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


# ----------------------------------------------------------------------------- optimizer


def build_optimizer(model: VisModel, preset: Preset) -> torch.optim.AdamW:
    """AdamW as Deformable DETR: the backbone at lr_backbone, the sampling-offset projections at
    lr x lr_offsets_mult, the rest at lr; frozen parameters left out, empty groups dropped. Each
    group keeps its undecayed rate as ``base_lr`` (see set_lr)."""
    groups = {"rest": [], "offsets": [], "backbone": []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith("backbone."):
            groups["backbone"].append(parameter)
        elif ".sampling_offsets." in name:
            groups["offsets"].append(parameter)
        else:
            groups["rest"].append(parameter)
    lrs = {
        "rest": preset.lr,
        "offsets": preset.lr * preset.lr_offsets_mult,
        "backbone": preset.lr_backbone,
    }
    return torch.optim.AdamW(
        [
            {"params": ps, "lr": lrs[key], "base_lr": lrs[key], "name": key}
            for key, ps in groups.items()
            if ps
        ],
        lr=preset.lr,
        weight_decay=preset.weight_decay,
    )


def drop_iteration(iterations: int, lr_drop: float) -> int:
    """The number of steps taken at the full learning rate; later steps use LR_DROP_FACTOR."""
    return max(1, round(lr_drop * iterations))


def lr_factor(iteration: int, iterations: int, lr_drop: float) -> float:
    """Learning-rate multiplier of step ``iteration`` (0-based) of a run of ``iterations``."""
    return 1.0 if iteration < drop_iteration(iterations, lr_drop) else LR_DROP_FACTOR


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


# ----------------------------------------------------------------------------- data order


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


def load_batch(dataset, seed: int, iteration: int, global_batch: int, rank: int, world: int):
    """This process's share of iteration ``iteration``'s global batch, as (clips, mask, targets)."""
    local = global_batch // world
    indices = clip_indices(seed, iteration, global_batch, len(dataset))
    items = []
    for slot in range(rank * local, (rank + 1) * local):
        seed_iteration(seed, iteration, slot)
        items.append(dataset[indices[slot]])
    seed_iteration(seed, iteration, -1 - rank)
    return collate_clips(items)


# ----------------------------------------------------------------------------- step


def autocast(device: torch.device):
    """bfloat16 autocast on GPUs, nothing on the CPU (reproducible float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch, device: torch.device):
    clips, padding_mask, targets = batch
    targets = [
        {k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets
    ]
    return clips.to(device), padding_mask.to(device), targets


def train_step(model, criterion, optimizer, batch, device, clip_max_norm: float) -> dict:
    """Forward, weighted loss, backward, clipping and the optimizer step; returns the losses
    (the weighted total as "loss" and every unweighted term) as floats."""
    clips, padding_mask, targets = to_device(batch, device)
    with autocast(device):
        outputs = model(clips, padding_mask)
    losses = criterion(outputs, targets)
    weights = criterion.weight_dict
    loss = sum(weights[k] * v for k, v in losses.items() if k in weights)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_max_norm > 0:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, clip_max_norm)
    optimizer.step()
    return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}


# ----------------------------------------------------------------------------- evaluation


def broadcast(value, src: int = 0):
    """``value`` of process ``src`` in every process (itself when not distributed)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def subset_ground_truth(val: YTVISClipDataset, video_ids: list[int]) -> dict:
    """The val annotation dict restricted to some videos (evaluation on a subset)."""
    ytvis = val.ytvis
    return {
        "videos": [ytvis.videos[v] for v in video_ids],
        "annotations": [a for v in video_ids for a in ytvis.anns_by_video[v]],
        "categories": list(ytvis.categories.values()),
    }


@torch.no_grad()
def predict_videos(model, postprocess, dataset, video_ids, device) -> list[dict]:
    """YouTube-VIS results (bench.data.results) of ``model`` on whole videos of ``dataset``."""
    model.eval()
    preset = model.preset
    transforms = build_transforms(False, preset.short_side, preset.max_size)
    runner = InferenceRunner(model, postprocess)
    results = []
    for video_id in video_ids:
        frames = list(range(dataset.ytvis.videos[video_id]["length"]))
        clip, target = transforms(
            dataset.load_clip(video_id, frames), dataset.load_target(video_id, frames)
        )
        orig = tuple(int(s) for s in target["orig_size"])
        with autocast(device):
            results += runner.run_video(clip.to(device), orig, video_id)
    return results


def evaluate_model(model, postprocess, val, video_ids, device, rank: int = 0, world: int = 1):
    """YouTube-VIS metrics of ``model`` on ``video_ids`` of the val set (inference split across
    processes, scored on rank 0); every process gets the metrics. Leaves the model in train mode."""
    results = predict_videos(model, postprocess, val, video_ids[rank::world], device)
    if world > 1:
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(results, gathered, dst=0)
        results = [r for part in gathered for r in part] if rank == 0 else []
    metrics = None
    if rank == 0:
        everything = len(video_ids) == len(val.video_ids)
        metrics = evaluate(
            val.ytvis if everything else subset_ground_truth(val, video_ids), results
        )
        metrics = {k: metrics[k] for k in LOG_METRICS if k in metrics}
    model.train()
    return broadcast(metrics)
