"""Per-frame ResNet backbone (torchvision) returning the transformer's levels and the mask skips.

A clip (B, T, 3, H, W) is run as B*T independent images. The ResNet is torchvision's, built with
``weights=None`` (nothing is ever downloaded); pretrained weights come only from a file the user
names (a torchvision ResNet state dict). Stages map to strides: layer1 4, layer2 8, layer3 16,
layer4 32. The backbone returns two things separately:

- ``levels``: the feature maps of the strides the transformer uses (e.g. (32,) as VisTR,
  (8, 16, 32) for a multi-level model), in that order;
- ``skips``: stride -> feature map for the mask head's FPN (e.g. strides 16 and 8).

Layers after the last stride anybody needs are not built (no layer4 without stride 32).
Normalisation is ``FrozenBatchNorm2d`` (DETR's choice, the right one with pretrained weights) or
``GroupNorm`` (trainable, for training from scratch on small batches). The stem and the stages
before ``train_from`` get no gradient.
"""

import math
from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d

RESNETS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}
STAGE_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")  # conv1 = the stem (conv1, bn1)
NORMS = ("frozen", "group")


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class Backbone(nn.Module):
    """ResNet body up to the coarsest needed stride; forward(images (N, 3, H, W))."""

    def __init__(
        self,
        name: str = "resnet50",
        level_strides: tuple[int, ...] = (32,),
        skip_strides: tuple[int, ...] = (16, 8),
        norm: str = "frozen",
        train_from: str = "layer2",
        weights: str | None = None,
    ):
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"backbone: unknown ResNet {name!r}; choose one of {sorted(RESNETS)}")
        if norm not in NORMS:
            raise ValueError(f"backbone: norm must be one of {NORMS}, got {norm!r}")
        if train_from not in STAGES:
            raise ValueError(f"backbone: train_from must be one of {STAGES}, got {train_from!r}")
        by_stride = {s: layer for layer, s in STAGE_STRIDES.items()}
        for stride in (*level_strides, *skip_strides):
            if stride not in by_stride:
                raise ValueError(
                    f"backbone: stride {stride} is not a ResNet stage; choose from {sorted(by_stride)}"
                )
        if not level_strides:
            raise ValueError("backbone: level_strides is empty (the transformer needs a level)")
        self.level_strides, self.skip_strides = tuple(level_strides), tuple(skip_strides)
        norm_layer = FrozenBatchNorm2d if norm == "frozen" else _group_norm
        resnet = RESNETS[name](weights=None, norm_layer=norm_layer)
        strides = sorted(set(level_strides) | set(skip_strides))
        # IntermediateLayerGetter keeps the children up to the last returned one (drops layer4 etc.)
        self.body = IntermediateLayerGetter(
            resnet, return_layers={by_stride[s]: str(s) for s in strides}
        )
        if weights is not None:
            self._load(weights)
        trainable = STAGES[STAGES.index(train_from) :]
        for child, module in self.body.named_children():
            stage = "conv1" if child in ("conv1", "bn1", "relu", "maxpool") else child
            module.requires_grad_(stage in trainable)
        width = 64 if name in ("resnet18", "resnet34") else 256  # layer1 output channels
        self.num_channels = {s: width * s // 4 for s in strides}  # stride -> channels

    def _load(self, path: str) -> None:
        """Load a torchvision ResNet state dict from ``path`` (fc and unused stages are ignored)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"backbone weights {path}: expected a state dict, got {type(state)}")
        own = self.body.state_dict()
        # a torchvision ResNet state dict, or one of this Backbone (keys prefixed "body.")
        state = OrderedDict((k.removeprefix("body."), v) for k, v in state.items())
        has_statistics = any(k.endswith("running_mean") for k in state)
        if has_statistics and not any(k.endswith("running_mean") for k in own):
            raise ValueError(
                f"backbone weights {path} were saved with BatchNorm statistics, but this backbone "
                "uses GroupNorm: build it with norm='frozen' (backbone_norm='frozen')"
            )
        state = OrderedDict((k, v) for k, v in state.items() if k in own)
        missing = sorted(set(own) - set(state))
        if missing:
            raise ValueError(
                f"backbone weights {path} do not fit: {len(missing)} missing keys, "
                f"e.g. {missing[:8]}"
            )
        wrong = [k for k, v in state.items() if v.shape != own[k].shape]
        if wrong:
            raise ValueError(
                f"backbone weights {path} do not fit: shape mismatch for {wrong[:8]} "
                f"(e.g. {wrong[0]}: file {tuple(state[wrong[0]].shape)}, "
                f"model {tuple(own[wrong[0]].shape)})"
            )
        self.body.load_state_dict(state)

    def forward(
        self,
        images: torch.Tensor,  # (N, 3, H, W), N = B*T
    ) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        features = self.body(images)  # stride (as str) -> (N, C_s, ceil(H/s), ceil(W/s))
        levels = [features[str(s)] for s in self.level_strides]
        skips = {s: features[str(s)] for s in self.skip_strides}
        return levels, skips


def build_backbone(preset) -> Backbone:
    """The backbone a preset describes."""
    return Backbone(
        name=preset.backbone,
        level_strides=preset.strides,
        skip_strides=preset.mask_strides,
        norm=preset.backbone_norm,
        train_from=preset.train_backbone_from,
        weights=preset.backbone_weights,
    )
