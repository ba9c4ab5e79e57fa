"""The tiny model every test trains or runs: the quick preset shrunk until a step takes well under
a second, with every part still present (two transformer levels at strides 8 and 16, two decoder
layers for the auxiliary losses, a mask FPN, a frozen stem and layer1).

    build_model("quick", backend, **TINY)                          # in Python
    python -m bench.train ... --set *set_args(TINY)                 # on a command line
"""

import json

TINY = {
    "backbone": "resnet18",
    "backbone_norm": "frozen",
    "train_backbone_from": "layer2",
    "strides": [8, 16],
    "mask_strides": [8],
    "num_frames": 2,
    "short_side": 64,
    "max_size": 64,
    "d_model": 24,
    "n_heads": 4,
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 32,
    "dropout": 0.0,
    "n_instances": 2,
    "mask_dim": 16,
}


def set_args(overrides: dict) -> list[str]:
    """``--set`` arguments (name=JSON value) for preset overrides."""
    return [f"{name}={json.dumps(value)}" for name, value in overrides.items()]
