"""Model presets: ``paper`` (the poster's scale) and ``quick`` (trains on 2 CPU cores in minutes).

A preset is a frozen dataclass holding every choice that defines a VIS model, its losses, its
input size and its training recipe; ``get_preset(name, **overrides)`` applies overrides with
dataclasses.replace (an unknown name raises a ValueError listing the valid fields). The attention
backends are not part of a preset: the model takes them as specs (attention.registry); a preset
only supplies per-backend option defaults (``attention_defaults``, e.g. its K).

``paper``: VisTR / Deformable VisTR at YouTube-VIS scale — ResNet-50 (frozen BN), T=36, input short
side 300 (max 540), stride-32 features (one level), d=384, 8 heads, 6 + 6 layers, FFN 2048,
10 instances per frame (360 queries), K=32. Measures FLOPs, FPS and memory; training it needs GPUs.

``quick``: the synthetic benchmark (128x128 frames of 1-4 shapes, 6 classes) on 2 CPU cores:
ResNet-18 to layer3 with GroupNorm (no pretrained statistics to freeze; batches too small for
BatchNorm), one transformer level at stride 16 (8x8 tokens per frame, T=6: 384 tokens), d=96,
4 heads, 2 + 2 layers, FFN 384, 8 instances per frame, factorised query embeddings, a mask FPN
over strides 16, 8, 4, Mask2Former's mask and dice weights (5, 5, dice cost 5), K=16, AdamW
lr 2e-4, batch 2. Why each choice was made, with the measurements behind it: docs/tuning.md.
"""

import dataclasses
from dataclasses import dataclass

from models.backbone import NORMS, RESNETS, STAGE_STRIDES, STAGES
from models.criterion import MASK_FRAMES, MASK_LOSSES, MASK_RESOLUTIONS
from models.vis_model import QUERY_EMBEDS


@dataclass(frozen=True)
class Preset:
    """All the choices that define a VIS model, its losses and its input size."""

    name: str = "custom"
    num_classes: int = 40  # YouTube-VIS 2019; the dataset's class count should be passed
    # backbone
    backbone: str = "resnet50"
    backbone_weights: str | None = None  # path to a torchvision ResNet state dict
    backbone_norm: str = "frozen"  # frozen | group
    train_backbone_from: str = "layer2"  # earlier stages get no gradient
    strides: tuple[int, ...] = (32,)  # transformer levels, fine to coarse
    mask_strides: tuple[int, ...] = (16, 8)  # backbone skips of the mask FPN
    # clip and input
    num_frames: int = 36
    short_side: int = 300
    max_size: int = 540
    # transformer
    d_model: int = 384
    n_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    n_instances: int = 10  # per frame: T * n_instances queries
    query_embed: str = "per_query"  # per_query (VisTR) | factorized (instance + frame)
    mask_dim: int = 384  # pixel / mask embedding channels
    # per backend name, option values where a spec names none (attention.registry.parse_backend)
    attention_defaults: dict = dataclasses.field(
        default_factory=lambda: {"stdeform": {"n_points": 32}}
    )
    # losses and matching
    aux_loss: bool = True
    focal_loss: bool = False
    mask_loss: str = "focal"  # focal | bce
    mask_frames: str = "all"  # all | valid: frames of a matched instance the mask loss covers
    mask_resolution: str = "input"  # input | logits: where the mask losses compare
    no_object_weight: float = 0.1
    loss_ce: float | None = None  # None: 1 (CE) or 2 (focal)
    loss_bbox: float = 5.0
    loss_giou: float = 2.0
    loss_mask: float = 1.0
    loss_dice: float = 1.0
    cost_class: float | None = None  # None: 1 (CE) or 2 (focal)
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    cost_dice: float = 0.0
    # optimisation (for the training harness; DETR's AdamW recipe)
    lr: float = 1e-4
    # per encoder backend name, the learning rate its own sweep chose (bench.study lr); a backend
    # not listed trains at lr
    lr_by_backend: dict = dataclasses.field(default_factory=dict)
    lr_backbone: float = 1e-5
    lr_offsets_mult: float = 0.1  # stdeform's sampling-offset projections, as Deformable DETR
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1
    batch_size: int = 1

    def __post_init__(self):
        problems = []
        if self.backbone not in RESNETS:
            problems.append(f"backbone={self.backbone!r} (choose from {sorted(RESNETS)})")
        if self.backbone_norm not in NORMS:
            problems.append(f"backbone_norm={self.backbone_norm!r} (choose from {NORMS})")
        if self.train_backbone_from not in STAGES:
            problems.append(f"train_backbone_from={self.train_backbone_from!r} (one of {STAGES})")
        valid = sorted(STAGE_STRIDES.values())
        if not self.strides or list(self.strides) != sorted(set(self.strides)):
            problems.append(f"strides={self.strides} (need increasing, non-empty)")
        if any(s not in valid for s in (*self.strides, *self.mask_strides)):
            problems.append(f"strides/mask_strides must be among {valid}")
        if self.d_model % 6 or self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} (divisible by 6 and n_heads={self.n_heads})")
        for name in ("num_classes", "num_frames", "n_instances", "enc_layers", "dec_layers"):
            if getattr(self, name) < (0 if name == "enc_layers" else 1):
                problems.append(f"{name}={getattr(self, name)}")
        for name, allowed in (
            ("query_embed", QUERY_EMBEDS),
            ("mask_loss", MASK_LOSSES),
            ("mask_resolution", MASK_RESOLUTIONS),
            ("mask_frames", MASK_FRAMES),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r} ({' | '.join(allowed)})")
        if problems:
            raise ValueError(f"preset {self.name!r}: invalid " + "; ".join(problems))


PAPER = Preset(name="paper")

QUICK = Preset(
    name="quick",
    num_classes=6,  # bench.data.synthetic's shapes
    backbone="resnet18",
    backbone_norm="group",
    train_backbone_from="conv1",
    strides=(16,),
    mask_strides=(16, 8, 4),
    num_frames=6,
    short_side=128,
    max_size=128,
    d_model=96,
    n_heads=4,
    enc_layers=2,
    dec_layers=2,
    dim_feedforward=384,
    dropout=0.0,
    n_instances=8,
    query_embed="factorized",
    mask_dim=64,
    attention_defaults={"stdeform": {"n_points": 16}},
    loss_mask=5.0,
    loss_dice=5.0,
    cost_dice=5.0,
    lr=2e-4,
    # each backend's rate from bench.study lr (reports/data/lr_sweep.*, docs/tuning.md)
    lr_by_backend={
        "divided": 2e-4,
        "full": 6e-4,
        "neighborhood": 2e-4,
        "stdeform": 6e-4,
        "window": 2e-4,
    },
    lr_backbone=2e-4,
    weight_decay=1e-4,
    clip_max_norm=0.1,
    batch_size=2,
)

PRESETS = {"paper": PAPER, "quick": QUICK}


def preset_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Preset) if f.name != "name"]


def get_preset(preset: "str | Preset" = "quick", **overrides) -> Preset:
    """A preset by name (or as given), with overrides applied."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    unknown = sorted(set(overrides) - set(preset_fields()))
    if unknown:
        raise ValueError(
            f"unknown preset override(s) {unknown}; valid names: {', '.join(preset_fields())}"
        )
    for key in ("strides", "mask_strides"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return dataclasses.replace(preset, **overrides)
