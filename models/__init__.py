"""The shared VIS model: one architecture, the attention backend as the only variable.

    model, criterion, postprocess = build_model("quick", "stdeform:n_points=32", num_classes=6)
    hybrid, _, _ = build_model("quick", encoder="full", decoder="stdeform")
    outputs = model(clips, padding_mask)            # clips (B, T, 3, H, W), mask (B, H, W)
    losses = criterion(outputs, targets)            # unweighted, by name
    loss = sum(criterion.weight_dict[k] * v for k, v in losses.items())
    results = postprocess(outputs, targets)         # YouTube-VIS results list

Modules: backbone, position_encoding, transformer, heads, vis_model, matcher, criterion,
postprocess (with InferenceRunner for long videos), presets.
"""

import torch

from attention.registry import BackendSpec, build_attention, parse_backend
from models.backbone import build_backbone
from models.criterion import SetCriterion, build_criterion
from models.matcher import SequenceMatcher, build_matcher
from models.postprocess import InferenceRunner, PostProcess
from models.presets import PRESETS, Preset, get_preset
from models.transformer import Transformer
from models.vis_model import VisModel

# the decoder cross-attention of a model whose encoder backend is encoder-only: VisTR's dense one
ENCODER_ONLY_DECODER = "full"
SIDES = ("encoder", "decoder")


def attention_specs(
    preset: Preset,
    backend: "str | BackendSpec" = "stdeform",
    encoder: "str | BackendSpec | None" = None,
    decoder: "str | BackendSpec | None" = None,
) -> dict[str, BackendSpec]:
    """{"encoder": spec, "decoder": spec} for a model: each side is ``encoder``/``decoder`` if
    given, else ``backend``; an encoder-only backend (e.g. window) leaves the decoder to
    ENCODER_ONLY_DECODER. Options a spec leaves out take the preset's attention_defaults."""
    defaults = preset.attention_defaults
    enc = parse_backend(encoder if encoder is not None else backend, defaults)
    if decoder is not None:
        dec = parse_backend(decoder, defaults)
    else:
        side = parse_backend(backend, defaults)
        dec = parse_backend(ENCODER_ONLY_DECODER, defaults) if side.encoder_only else side
    if dec.encoder_only:
        raise ValueError(
            f"decoder backend {dec.name} is encoder-only (self-attention over a token grid); "
            "choose a decoder that can cross-attend, e.g. full or stdeform"
        )
    return {"encoder": enc, "decoder": dec}


def build_model(
    preset: str | Preset = "quick",
    backend: "str | BackendSpec" = "stdeform",
    num_classes: int | None = None,
    category_ids: list[int] | None = None,
    max_detections: int | None = None,
    *,
    encoder: "str | BackendSpec | None" = None,
    decoder: "str | BackendSpec | None" = None,
    **overrides,
) -> tuple[VisModel, SetCriterion, PostProcess]:
    """Build (model, criterion, postprocess) for a preset and its attention backends.

    preset: "paper", "quick" or a Preset. backend: a spec (attention.registry), e.g. "full",
    "full:impl=math", "stdeform:mode=frames,n_points=32", for the encoder's self-attention and
    the decoder's cross-attention; ``encoder``/``decoder`` choose one side separately (hybrids,
    see attention_specs). num_classes: the dataset's class count (default: the preset's).
    category_ids / max_detections: for the postprocess (dataset.cat_ids; best-n per video).
    overrides: any Preset field (models.presets.Preset), e.g. d_model=48, lr=1e-4.

    Every parameter outside the attention backends is initialised from the global generator in
    the same order whatever the backends, so the same seed gives the same shared initial weights
    in every model (backends draw theirs from a stream of their own).
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    preset = get_preset(preset, **overrides)
    specs = attention_specs(preset, backend, encoder, decoder)
    structure = {
        "d_model": preset.d_model,
        "n_heads": preset.n_heads,
        "n_levels": len(preset.strides),
        "n_frames": preset.num_frames,
    }
    backbone = build_backbone(preset)
    seed = torch.initial_seed()

    def attention(side: str, index: int):
        # each backend draws its initial weights from its own stream, seeded by the global seed,
        # its side and layer, and leaves the global generator untouched: the model's shared
        # parts get the same initial weights whatever the backends (paired comparisons)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((seed * 1_000_003 + SIDES.index(side) * 1009 + index) % 2**63)
            return build_attention(specs[side], **structure, layer_index=index)

    transformer = Transformer(
        lambda i: attention("encoder", i),
        lambda i: attention("decoder", i),
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
        preset=preset,
        attention=specs,
    )
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


__all__ = [
    "PRESETS",
    "InferenceRunner",
    "PostProcess",
    "Preset",
    "SequenceMatcher",
    "SetCriterion",
    "VisModel",
    "attention_specs",
    "build_model",
    "get_preset",
]
