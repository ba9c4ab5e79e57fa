"""Adding a backend is one module plus one registry line: a toy backend defined here runs through
the model, a FLOPs and a timing case of bench.measure, a training step and bench.report, with no
other file changed."""

import pytest
import torch
from torch import nn

from attention.base import AttentionBackend
from attention.options import Option
from attention.registry import BACKENDS, parse_backend
from tests.tiny import TINY


class PooledAttention(AttentionBackend):
    """Every query attends to the mean of the (unpadded) values, scaled: a toy, O(THWC)."""

    name = "pooled"
    complexity = "O(THWC)"
    OPTIONS = (Option("scale", "float", 1.0, "multiplier of the pooled value", minimum=0),)

    def __init__(self, d_model=24, n_heads=4, scale=1.0, **_):
        super().__init__()
        self.scale = scale
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, query_pos, value, value_pos, spatial_shapes=None, level_start=None,
                reference_points=None, value_padding_mask=None):  # fmt: skip
        v = self.value_proj(value)  # (N, S, d)
        keep = torch.ones_like(v[..., :1]) if value_padding_mask is None else (
            ~value_padding_mask[..., None]).to(v.dtype)  # fmt: skip
        pooled = (v * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp(min=1)
        return self.output_proj(self.scale * pooled.expand(-1, query.shape[1], -1))

    def mac_breakdown(self, num_queries, spatial_shapes):
        S = sum(t * h * w for t, h, w in spatial_shapes)
        d = self.value_proj.in_features
        return {"value_proj": S * d * d, "output_proj": num_queries * d * d}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(BACKENDS, "pooled", PooledAttention)
    return "pooled:scale=0.5"


def test_the_toy_spec_parses_and_labels_from_its_own_declaration(toy):
    spec = parse_backend(toy)
    assert spec.options == {"scale": 0.5} and spec.label == "pooled (scale=0.5)"
    with pytest.raises(ValueError, match="scale expects a number >= 0"):
        parse_backend("pooled:scale=-1")


def test_the_toy_runs_through_model_measurement_training_and_report(toy, tiny_data, tmp_path):
    from bench.ablate import run_case, run_records
    from bench.measure.cases import flops_case, inference_case
    from bench.method import method_fields
    from bench.report import render_report
    from bench.store import ResultsStore
    from bench.train import TrainConfig, train
    from models import attention_specs, build_model, get_preset

    model, _, _ = build_model("quick", toy, **TINY)
    assert model.transformer.encoder[0].self_attn.scale == 0.5

    fields = method_fields(attention_specs(get_preset("quick"), toy))
    case = {"preset": "quick", **fields, "overrides": TINY, "device": "cpu", "threads": 1,
            "input": {"T": 2, "height": 64, "width": 64}}  # fmt: skip
    flops = flops_case({**case, "kind": "flops"})
    counted = {(r["component"], r["counter"]): r["value"] for r in flops}
    assert counted["encoder_attention", "fvcore"] == pytest.approx(
        counted["encoder_attention", "analytic"]
    )
    timing = inference_case({**case, "kind": "inference", "warmup": 0, "repeats": 2, "seconds": 60})
    assert {r["metric"] for r in timing} == {"fps", "peak_memory"}
    store = ResultsStore(tmp_path / "results" / "measurements.jsonl")
    store.append(*flops, *timing)

    config = TrainConfig(run="toy", out=str(tmp_path / "results" / "runs"), data=str(tiny_data),
                         backend=toy, iterations=1, eval_every=1, batch_size=2, threads=1,
                         overrides=TINY)  # fmt: skip
    final = train(config)
    assert final["attention"]["encoder"] == "pooled:scale=0.5"
    ablation = ResultsStore(tmp_path / "results" / "ablation.jsonl")
    ablation.append(*run_records(run_case(config), final, None, None))

    written = render_report(tmp_path / "results", tmp_path / "report")
    markdown = written["README.md"].read_text()
    assert "pooled (scale=0.5)" in markdown
    assert "O(THWC)" in markdown
