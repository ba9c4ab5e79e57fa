"""The shared VIS model: one architecture, the attention backend as the only variable.

    model, criterion, postprocess = build_model("quick", "stdeform", num_classes=6, n_points=32)
    outputs = model(clips, padding_mask)            # clips (B, T, 3, H, W), mask (B, H, W)
    losses = criterion(outputs, targets)            # unweighted, by name
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    results = postprocess(outputs, targets)         # YouTube-VIS results list

Modules: backbone, position_encoding, transformer, heads, vis_model, matcher, criterion,
postprocess (with InferenceRunner for long videos), presets.
"""

import inspect

import torch

from attention.registry import BACKENDS, build_attention
from models.backbone import build_backbone
from models.criterion import SetCriterion, build_criterion
from models.matcher import SequenceMatcher, build_matcher
from models.postprocess import InferenceRunner, PostProcess
from models.presets import PRESETS, Preset, get_preset
from models.transformer import Transformer
from models.vis_model import VisModel

# preset field -> keyword of the backend constructor (passed only to backends that take it)
BACKEND_OPTIONS = {
    "attention_impl": "impl",
    "n_points": "n_points",
    "mode": "mode",
    "window": "window",
}


def backend_options(preset: Preset, backend: str, explicit: set[str] = frozenset()) -> dict:
    """Keyword arguments of ``build_attention(backend, ...)`` for this preset.

    The model supplies d_model, n_heads, n_levels and n_frames; of the options in BACKEND_OPTIONS
    those the backend's constructor accepts are passed (``attention_impl`` only when set). An
    option named explicitly (``explicit``) that the backend does not take raises a ValueError.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; registered: {sorted(BACKENDS)}")
    accepted = set(inspect.signature(BACKENDS[backend]).parameters)
    options = {
        "d_model": preset.d_model,
        "n_heads": preset.n_heads,
        "n_levels": len(preset.strides),
        "n_frames": preset.num_frames,
    }
    options = {k: v for k, v in options.items() if k in accepted}
    for field, keyword in BACKEND_OPTIONS.items():
        value = getattr(preset, field)
        if keyword not in accepted:
            if field in explicit:
                raise ValueError(
                    f"override {field}={value!r} is not an option of backend {backend!r} "
                    f"(it takes {sorted(accepted)})"
                )
            continue
        if value is not None:
            options[keyword] = value
    return options


def build_model(
    preset: str | Preset = "quick",
    backend: str = "stdeform",
    num_classes: int | None = None,
    category_ids: list[int] | None = None,
    max_detections: int | None = None,
    **overrides,
) -> tuple[VisModel, SetCriterion, PostProcess]:
    """Build (model, criterion, postprocess) for a preset and an attention backend.

    preset: "paper", "quick" or a Preset. backend: a name in attention.registry.BACKENDS
    ("full", "stdeform"). num_classes: the dataset's class count (default: the preset's).
    category_ids / max_detections: for the postprocess (dataset.cat_ids; best-n per video).

    overrides: any Preset field (see models.presets.Preset), notably
      backend options  attention_impl ("sdpa" | "math" for full; "op" | "reference" for
                       stdeform), n_points (K), mode ("3d" | "frames" | "frame"), window;
      architecture     backbone, backbone_weights (path), backbone_norm, train_backbone_from,
                       strides, mask_strides, num_frames, d_model, n_heads, enc_layers,
                       dec_layers, dim_feedforward, dropout, n_instances, query_embed, mask_dim;
      losses           aux_loss, focal_loss, mask_loss, mask_frames, mask_resolution,
                       no_object_weight, loss_ce, loss_bbox, loss_giou, loss_mask, loss_dice,
                       cost_class, cost_bbox, cost_giou, cost_dice;
      input/training   short_side, max_size, lr, lr_backbone, lr_offsets_mult, weight_decay,
                       clip_max_norm, batch_size (read by the training harness, not the model).
    A backend option the chosen backend does not take (e.g. n_points for "full") raises.
    e.g. build_model("quick", "full", attention_impl="math"),
         build_model("quick", "stdeform", n_points=32, mode="frames").
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    preset = get_preset(preset, **overrides)
    options = backend_options(preset, backend, set(overrides))
    backbone = build_backbone(preset)
    transformer = Transformer(
        attention=lambda: build_attention(backend, **options),
        in_channels=[backbone.num_channels[s] for s in preset.strides],
        d_model=preset.d_model,
        n_heads=preset.n_heads,
        enc_layers=preset.enc_layers,
        dec_layers=preset.dec_layers,
        dim_feedforward=preset.dim_feedforward,
        dropout=preset.dropout,
    )
    model = VisModel(
        backbone,
        transformer,
        num_classes=preset.num_classes,
        num_frames=preset.num_frames,
        n_instances=preset.n_instances,
        mask_dim=preset.mask_dim,
        aux_loss=preset.aux_loss,
        focal_loss=preset.focal_loss,
        query_embed=preset.query_embed,
    )
    model.preset = preset
    criterion = build_criterion(
        preset, preset.num_classes, build_matcher(preset), model.mask_stride
    )
    postprocess = PostProcess(
        model.mask_stride,
        focal_loss=preset.focal_loss,
        max_detections=max_detections,
        category_ids=category_ids,
    )
    return model, criterion, postprocess


def build_optimizer(model: VisModel, preset: Preset | None = None) -> torch.optim.AdamW:
    """AdamW as Deformable DETR: the backbone at lr_backbone, the sampling-offset projections at
    lr x lr_offsets_mult, the rest at lr; frozen parameters left out, empty groups dropped."""
    preset = preset or model.preset
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
        [{"params": ps, "lr": lrs[key], "name": key} for key, ps in groups.items() if ps],
        lr=preset.lr,
        weight_decay=preset.weight_decay,
    )


__all__ = [
    "PRESETS",
    "InferenceRunner",
    "PostProcess",
    "Preset",
    "SequenceMatcher",
    "SetCriterion",
    "VisModel",
    "backend_options",
    "build_model",
    "build_optimizer",
    "get_preset",
]
