"""The paper preset builds for every backend and runs at its input size with T reduced to 4.

(The T=36 forward is a benchmark, not a test.)
"""

import pytest
import torch

from models import build_model, get_preset

CONFIGS = {
    "full-sdpa": "full:impl=sdpa",
    "full-math": "full:impl=math",
    "stdeform-3d": "stdeform:mode=3d",
    "stdeform-frames": "stdeform:mode=frames",
    "stdeform-frame": "stdeform:mode=frame",
}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_paper_preset_forward_at_input_size(config):
    torch.manual_seed(0)
    model, _, _ = build_model("paper", CONFIGS[config], num_frames=4)
    preset = get_preset("paper")
    assert model.preset.d_model == preset.d_model == 384
    spec = model.attention["encoder"]
    assert spec.name == CONFIGS[config].split(":")[0]
    if spec.name == "stdeform":
        assert spec.options["n_points"] == 32
    model.eval()
    H, W = preset.short_side, preset.max_size  # 300 x 540
    clips = torch.randn(1, 4, 3, H, W)
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    with torch.no_grad():
        outputs = model(clips, mask)
    n = preset.n_instances
    assert outputs["pred_logits"].shape == (1, 4, n, preset.num_classes + 1)
    assert outputs["pred_boxes"].shape == (1, 4, n, 4)
    assert outputs["pred_masks"].shape == (1, n, 4, 38, 68)  # stride 8 of 300 x 540
    assert len(outputs["aux_outputs"]) == preset.dec_layers - 1
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert torch.isfinite(outputs[key]).all()
