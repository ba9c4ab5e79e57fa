"""Backbone pretraining on per-pixel shape classes of frames disjoint from the runs' videos.

VisTR starts from ImageNet- and COCO-pretrained weights; nothing can be downloaded here, so the
suite gives every run of an ablation the same starting point by pretraining the preset's
backbone for a fixed number of iterations on dense semantic segmentation (each pixel: its
instance's class, or background) of a synthetic set drawn from another seed than the runs'
(bench.data.source.pretraining_data: no training or validation video of the runs is seen), with
a small throw-away head on the mask head's two coarsest skip features. Dense labels teach the
shape classes in a couple of minutes on a CPU, where the set-prediction losses alone take far
longer. The weights are cached under --out by a hash of (preset, data, iterations, seed), so the
runs of an ablation share them; the summary beside them says what they were trained on.

    python -m bench.pretrain --preset quick --data synthetic --iterations 400 --out data/pretrained
"""

import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench import cli
from bench.atomic import save_atomic, write_atomic
from bench.data.dataset import YTVISClipDataset
from bench.data.source import pretraining_data, resolve_data
from bench.data.transforms import build_transforms
from models import PRESETS, get_preset
from models.backbone import Backbone, build_backbone


class SemanticHead(nn.Module):
    """Per-pixel class logits (C + 1, last = background) from the mask head's two coarsest skip
    features (strides 8 and 16 in the quick preset; one, where the mask head has one)."""

    def __init__(self, backbone: Backbone, num_classes: int, width: int = 64):
        super().__init__()
        self.strides = sorted(backbone.skip_strides)[-2:]  # the mask head's two coarsest skips
        self.laterals = nn.ModuleList(
            nn.Conv2d(backbone.num_channels[s], width, 1) for s in self.strides
        )
        self.classifier = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes + 1, 1),
        )

    def forward(self, features: dict[int, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        merged = self.laterals[0](features[self.strides[0]])  # (N, w, H/s, W/s), the finest
        for lateral, stride in zip(self.laterals[1:], self.strides[1:], strict=True):
            coarse = lateral(features[stride])
            merged = merged + F.interpolate(coarse, size=merged.shape[-2:], mode="nearest")
        logits = self.classifier(merged)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def semantic_batch(dataset: YTVISClipDataset, indices: list[int], num_classes: int):
    """Frames (B, 3, H, W) and per-pixel labels (B, H, W): class of the visible instance, or C."""
    frames, labels = [], []
    for index in indices:
        clip, target = dataset[index]  # a one-frame clip
        label = torch.full(clip.shape[-2:], num_classes, dtype=torch.long)
        for mask, cls in zip(target["masks"][:, 0], target["labels"], strict=True):
            label[mask] = cls  # masks of one frame are disjoint (occlusion already applied)
        frames.append(clip[0])
        labels.append(label)
    return torch.stack(frames), torch.stack(labels)


def cache_path(out: Path, preset, paths: dict, iterations: int, seed: int) -> Path:
    key = json.dumps(
        {
            "backbone": preset.backbone,
            "norm": preset.backbone_norm,
            "trained_from": preset.train_backbone_from,
            "strides": [preset.strides, preset.mask_strides],
            "size": [preset.short_side, preset.max_size],
            "data": str(paths["train_annotations"]),
            "iterations": iterations,
            "seed": seed,
        },
        sort_keys=True,
    )
    return out / f"{preset.backbone}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


def pretrain_backbone(
    preset_name: str,
    paths: dict,
    out: str | Path = "data/pretrained",
    iterations: int = 400,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = None,
    overrides: dict | None = None,
    data: dict | None = None,
) -> dict:
    """Pretrain (or reuse) the backbone of the preset with ``overrides`` (the runs' preset
    fields: backbone, norm, strides, input size); returns {"weights": path, "seconds", ...}."""
    if threads:
        torch.set_num_threads(threads)
    overrides = {k: v for k, v in (overrides or {}).items() if k != "backbone_weights"}
    preset = get_preset(preset_name, **overrides)
    path = cache_path(Path(out), preset, paths, iterations, seed)
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    torch.manual_seed(seed)
    dataset = YTVISClipDataset(
        paths["train_images"],
        paths["train_annotations"],
        num_frames=1,
        transforms=build_transforms(True, preset.short_side, preset.max_size),
        train=True,
    )
    num_classes = len(dataset.cat_ids)
    backbone = build_backbone(preset)
    head = SemanticHead(backbone, num_classes)
    parameters = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
    class_weights = torch.ones(num_classes + 1)
    class_weights[-1] = 0.2  # background covers most pixels
    started = time.perf_counter()
    loss_sum = 0.0
    for _ in tqdm(range(iterations), desc="pretrain backbone", dynamic_ncols=True):
        indices = torch.randint(len(dataset), (batch_size,)).tolist()
        frames, labels = semantic_batch(dataset, indices, num_classes)
        _, skips = backbone(frames)
        logits = head(skips, frames.shape[-2:])
        loss = F.cross_entropy(logits, labels, weight=class_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item()
    save_atomic(path, backbone.state_dict())
    info = {
        "weights": str(path),
        "seconds": time.perf_counter() - started,
        "iterations": iterations,
        "batch_size": batch_size,
        "final_loss": loss_sum / max(iterations, 1),
        "threads": torch.get_num_threads(),
        "data": data or {"source": str(paths["train_annotations"]), "disjoint": None},
    }
    write_atomic(info_path, json.dumps(info, indent=2))
    return info


def build_parser():
    parser = cli.parser("python -m bench.pretrain", __doc__)
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="model preset whose backbone is pretrained")  # fmt: skip
    parser.add_argument("--data", default="synthetic",
                        help="the runs' data ('synthetic', 'synthetic:FIELD=VALUE,...' or a "
                        "YouTube-VIS directory); pretraining uses a disjoint synthetic set drawn "
                        "from another seed, or a directory's own training split")  # fmt: skip
    parser.add_argument("--iterations", type=cli.positive_int, default=400, help="optimizer steps")
    parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="frames per step")
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0,
                        help="initial weights and frame order")  # fmt: skip
    parser.add_argument("--threads", type=cli.positive_int, default=None,
                        help="torch threads (default: torch's)")  # fmt: skip
    parser.add_argument("--out", default="data/pretrained", help="folder of the cached weights")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cli.writable_dir(args.out)
    source, disjoint = pretraining_data(args.data)
    info = pretrain_backbone(
        args.preset,
        {k: str(v) for k, v in resolve_data(source).items()},
        args.out,
        args.iterations,
        args.batch_size,
        seed=args.seed,
        threads=args.threads,
        data={"source": source, "disjoint": disjoint},
    )
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    cli.run("python -m bench.pretrain", main)
