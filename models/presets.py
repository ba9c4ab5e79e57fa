"""Model presets: ``paper`` (the poster's scale) and ``quick`` (trains on 2 CPU cores in minutes).

A preset is a frozen dataclass; ``get_preset(name, **overrides)`` applies overrides with
dataclasses.replace (an unknown name raises a ValueError listing the valid fields).

``paper``: VisTR / Deformable VisTR at YouTube-VIS scale — ResNet-50 (frozen BN), T=36, input short
side 300 (max 540), stride-32 features (one level), d=384, 8 heads, 6 + 6 layers, FFN 2048,
10 instances per frame (360 queries), K=32 points (stdeform, mode 3d). Used to measure FLOPs, FPS
and memory; training it needs GPUs.

``quick``: the synthetic benchmark (128x128 frames of 1-4 shapes, 6 classes) trained on 2 CPU
cores (one training step, batch 2, takes ~0.35 s there: ~1700 steps in 10 minutes).
- ResNet-18 truncated after layer3 (no layer4: strides 4, 8, 16 only), GroupNorm instead of
  frozen BN (there are no pretrained statistics to freeze, and batches of 12 frames are too small
  for BatchNorm), the whole backbone trained (the convolutions are ~55% of a step).
- The transformer runs on one level at stride 16 (8x8 tokens per frame, T=6: 384 tokens), d=96
  (divisible by 6 for the 3D sine and by 4 heads), 2 encoder + 2 decoder layers, FFN 384, K=16.
  A second level at stride 8 cost 25% more per step for no gain in a 800-step comparison.
- 8 instances per frame (48 queries): better mask and box losses than 5 at equal time.
- Factorized query embeddings (instance + frame): a sequence's T queries start out agreeing on
  one instance; AP 0.034 vs 0.027 for VisTR's per-query embeddings after 1200 steps.
- Masks: FPN over strides 16, 8 and 4 (logits at stride 4, 32x32; stride 8 is too coarse for the
  small shapes), the mask losses computed at the input resolution, and Mask2Former's weights
  (mask 5, dice 5, dice in the matching cost 5) instead of VisTR's 1 and 1: masks are what AP
  measures, and with weight 1 they lagged far behind the boxes.
- Cross-entropy classification (focal gave the same AP), AdamW lr 2e-4 (1e-3 was worse,
  4e-4 no better), batch 2 (batch 1 and 4 no better at equal time).
Measured (2026-11, 2 CPU cores): from scratch, masks and boxes learn but the class (shape) stays
at chance level for the first ~1200 steps (AP ~0.03). Hence bench.ablate first pretrains the
backbone for 800 iterations on per-pixel shape classes (~4 minutes), shared by all runs; from
there a 7.5-minute stdeform run reaches AP ~0.38, AP50 ~0.59-0.64 (K=16 / K=32, scored with mask
quality; ~0.34 / ~0.57 with the class probability alone), while full attention stays at AP ~0.05:
it learns much slower, as the poster reports.
"""

import dataclasses
from dataclasses import dataclass

from models.backbone import NORMS, RESNETS, STAGE_STRIDES, STAGES


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
    # attention backend options (passed to the backends that take them)
    attention_impl: str | None = None  # full: sdpa | math; stdeform: op | reference
    n_points: int = 32  # stdeform K
    mode: str = "3d"  # stdeform: 3d | frames | frame
    window: int | None = None  # stdeform frames mode: temporal window (default all T)
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
        if self.query_embed not in ("per_query", "factorized"):
            problems.append(f"query_embed={self.query_embed!r} (per_query | factorized)")
        if self.mode not in ("3d", "frames", "frame"):
            problems.append(f"mode={self.mode!r} (3d | frames | frame)")
        if self.mask_loss not in ("focal", "bce"):
            problems.append(f"mask_loss={self.mask_loss!r} (focal | bce)")
        if self.mask_resolution not in ("input", "logits"):
            problems.append(f"mask_resolution={self.mask_resolution!r} (input | logits)")
        if self.mask_frames not in ("all", "valid"):
            problems.append(f"mask_frames={self.mask_frames!r} (all | valid)")
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
    n_points=16,
    loss_mask=5.0,
    loss_dice=5.0,
    cost_dice=5.0,
    lr=2e-4,
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
