"""The VIS model: backbone per frame -> transformer (pluggable attention) -> class, box, mask heads.

forward(clips (B, T, 3, H, W), padding_mask (B, H, W)) returns

    pred_logits  (B, T, n, C+1)   class logits per frame query, last = no-object
    pred_boxes   (B, T, n, 4)     (cx, cy, w, h) normalised by the image's (unpadded) size
    pred_masks   (B, n, T, h, w)  mask logits at the mask stride of the padded frame
    aux_outputs  list of the same three for every earlier decoder layer (when aux_loss)

with n = n_instances: instance i's sequence is the T queries t * n + i (frame-major, as VisTR).
The queries' learned positional embeddings are either one free vector per query
(``query_embed="per_query"``, VisTR) or the sum of an instance embedding and a frame embedding
(``"factorized"``: the T queries of a sequence share their instance part, which makes the
sequence's frames agree on one instance from the start and speeds up training from scratch).
Box centres are predicted relative to the query's reference point (Deformable DETR): the box head's
(cx, cy) logits are added to the inverse sigmoid of the reference (x, y).
"""

import math

import torch
from torch import nn

from models.backbone import Backbone
from models.heads import MLP, PixelDecoder
from models.transformer import Transformer

QUERY_EMBEDS = ("per_query", "factorized")


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class VisModel(nn.Module):
    """VisTR-style video instance segmentation model; see the module docstring."""

    def __init__(
        self,
        backbone: Backbone,
        transformer: Transformer,
        num_classes: int,
        num_frames: int,
        n_instances: int,
        mask_dim: int,
        aux_loss: bool = True,
        focal_loss: bool = False,
        query_embed: str = "per_query",
        preset=None,
        attention: dict | None = None,
    ):
        """preset: the models.presets.Preset it was built from (input size and training recipe,
        read by the harness); attention: {"encoder": spec, "decoder": spec}, the
        attention.registry.BackendSpec of each side, as results record them."""
        super().__init__()
        self.preset, self.attention = preset, attention or {}
        d = transformer.d_model
        self.backbone, self.transformer = backbone, transformer
        self.num_classes, self.num_frames, self.n_instances = num_classes, num_frames, n_instances
        self.aux_loss = aux_loss
        if query_embed not in QUERY_EMBEDS:
            raise ValueError(f"query_embed must be one of {QUERY_EMBEDS}, got {query_embed!r}")
        if query_embed == "per_query":  # VisTR: one free embedding per (frame, instance) query
            self.query_embed = nn.Embedding(num_frames * n_instances, d)
        else:  # instance embedding + frame embedding
            self.instance_embed = nn.Embedding(n_instances, d)
            self.frame_embed = nn.Embedding(num_frames, d)
        self.class_embed = nn.Linear(d, num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.mask_embed = MLP(d, d, mask_dim, 3)
        skips = {s: backbone.num_channels[s] for s in backbone.skip_strides}
        self.pixel_decoder = PixelDecoder(d, skips, mask_dim)
        self.mask_stride = min(backbone.skip_strides or (max(backbone.level_strides),))
        if focal_loss:  # prior probability 0.01 for every class, as Deformable DETR
            nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)

    def forward(self, clips: torch.Tensor, padding_mask: torch.Tensor) -> dict:
        self._check_inputs(clips, padding_mask)
        B, T, _, H, W = clips.shape
        n = self.n_instances
        levels, skips = self.backbone(clips.flatten(0, 1))  # per frame: B*T images
        out = self.transformer(levels, padding_mask, self.queries())
        hs = out["hs"]  # (n_dec, B, Q, d), Q = T * n
        T_, H_, W_ = out["spatial_shapes"][-1].tolist()  # the coarsest level
        memory = out["memory"][:, out["level_start"][-1] :]  # (B, T*H_*W_, d)
        memory = memory.view(B, T_, H_, W_, -1).permute(0, 1, 4, 2, 3).flatten(0, 1)
        pixels = self.pixel_decoder(memory, skips)  # (B*T, c, h, w)
        pixels = pixels.view(B, T, *pixels.shape[1:])  # (B, T, c, h, w)

        logits = self.class_embed(hs).unflatten(2, (T, n))  # (n_dec, B, T, n, C+1)
        boxes = self.bbox_embed(hs)  # (n_dec, B, Q, 4)
        centre = boxes[..., :2] + inverse_sigmoid(out["reference_xy"])
        boxes = torch.cat([centre, boxes[..., 2:]], -1).sigmoid().unflatten(2, (T, n))
        embed = self.mask_embed(hs).unflatten(2, (T, n))  # (n_dec, B, T, n, c)
        masks = torch.einsum("lbtnc,btchw->lbnthw", embed, pixels)  # (n_dec, B, n, T, h, w)

        layers = [
            {"pred_logits": a, "pred_boxes": b, "pred_masks": c}
            for a, b, c in zip(logits, boxes, masks, strict=True)
        ]
        outputs = dict(layers[-1])
        if self.aux_loss:
            outputs["aux_outputs"] = layers[:-1]
        return outputs

    def queries(self) -> torch.Tensor:  # (T * n, d), query q = t * n + i
        """The learned positional embeddings of the T x n_instances queries, frame-major."""
        if hasattr(self, "query_embed"):
            return self.query_embed.weight
        return (self.frame_embed.weight[:, None] + self.instance_embed.weight[None]).flatten(0, 1)

    def _check_inputs(self, clips: torch.Tensor, padding_mask: torch.Tensor) -> None:
        if clips.dim() != 5 or clips.shape[2] != 3:
            raise ValueError(f"clips must be (B, T, 3, H, W), got {tuple(clips.shape)}")
        if clips.shape[1] != self.num_frames:
            raise ValueError(
                f"clips have T={clips.shape[1]} frames; this model was built for "
                f"num_frames={self.num_frames}"
            )
        B, _, _, H, W = clips.shape
        if padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != (B, H, W):
            raise ValueError(
                f"padding_mask must be (B, H, W) = {(B, H, W)} bool, got "
                f"{tuple(padding_mask.shape)} {padding_mask.dtype}"
            )
        if bool(padding_mask[:, 0, 0].any()):
            raise ValueError("padding_mask marks the top-left pixel as padding (an empty image?)")
