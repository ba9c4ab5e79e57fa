"""FLOP counting: fvcore, FlopCounterMode and the backends' analytic formulas agree exactly."""

import pytest
import torch

from attention.registry import build_attention
from bench.measure.fit import loglog_slope
from bench.measure.flops import count_flop_counter, count_fvcore, stdeform_macs

SHAPES = [(3, 4, 5), (3, 2, 3)]  # two levels (T, H, W)
D_MODEL = 48


class SelfAttention(torch.nn.Module):
    """Encoder-style self-attention over the tokens of SHAPES, for counting."""

    def __init__(self, backend):
        super().__init__()
        self.backend = backend
        self.register_buffer("shapes", torch.tensor(SHAPES))
        sizes = [t * h * w for t, h, w in SHAPES]
        self.register_buffer("start", torch.tensor([0, sizes[0]]))

    def forward(self, x, reference_points):
        return self.backend(x, None, x, None, self.shapes, self.start, reference_points)


def inputs():
    S = sum(t * h * w for t, h, w in SHAPES)
    torch.manual_seed(0)
    return torch.randn(1, S, D_MODEL), torch.rand(1, S, len(SHAPES), 3)


# (spec, the structural arguments the model would pass)
BACKENDS = [
    ("full:impl=sdpa", {}),
    ("full:impl=math", {}),
    ("stdeform:mode=3d,n_points=4", {"n_levels": 2}),
    ("stdeform:mode=frame,n_points=4", {"n_levels": 2}),
    ("stdeform:mode=frames,n_points=2", {"n_levels": 2, "n_frames": 3}),
    ("divided:impl=sdpa", {}),
    ("divided:impl=math", {}),
    # 2x4x4 windows pad both levels, 2x2x2 windows pad the first; layer 1 shifts
    ("window:size=2x4x4", {"layer_index": 1}),
    ("window:size=2x2x2,impl=math", {"layer_index": 0}),
    ("neighborhood:kernel=3x3x5", {}),  # clipped to 3x2x3 on the second level
    ("neighborhood:kernel=1x3x3,impl=flex", {}),
]


def self_attention(spec: str, structure: dict) -> SelfAttention:
    return SelfAttention(build_attention(spec, d_model=D_MODEL, n_heads=4, **structure))


@pytest.mark.parametrize(("spec", "structure"), BACKENDS)
def test_counted_macs_equal_the_analytic_formula(spec, structure):
    module = self_attention(spec, structure)
    x, ref = inputs()
    counted = count_fvcore(module, (x, ref))
    assert counted.total_macs == module.backend.macs(x.shape[1], SHAPES)
    assert counted.total_macs > 0


@pytest.mark.parametrize(("spec", "structure"), BACKENDS)
def test_fvcore_macs_times_two_equal_flop_counter_mode(spec, structure):
    module = self_attention(spec, structure)
    x, ref = inputs()
    flops, per_op = count_flop_counter(module, (x, ref))
    assert flops == 2 * count_fvcore(module, (x, ref)).total_macs
    if spec.startswith("stdeform"):
        assert per_op["visbench.stdeform_attn"] > 0


@pytest.mark.parametrize(
    ("spec", "structure"),
    [b for b in BACKENDS if b[0].startswith(("divided", "window", "neighborhood"))],
)
def test_grid_backends_attention_is_counted_as_the_formula(spec, structure):
    """The attention products alone (SDPA or matmuls, or the neighbourhood op) match the
    backend's "attention" terms; the rest of the count is its projections."""
    module = self_attention(spec, structure)
    x, ref = inputs()
    counted = count_fvcore(module, (x, ref)).by_operator
    breakdown = module.backend.mac_breakdown(x.shape[1], SHAPES)
    attention = sum(v for k, v in breakdown.items() if k.endswith("attention"))
    products = {"scaled_dot_product_attention", "matmul", "neighborhood_attn"}
    assert sum(v for op, v in counted.items() if op in products) == attention > 0
    assert counted["linear"] == breakdown["projections"]


def test_the_op_is_counted_with_its_formula():
    backend = build_attention("stdeform:n_points=4", d_model=D_MODEL, n_heads=4, n_levels=2)
    module = SelfAttention(backend)
    x, ref = inputs()
    counted = count_fvcore(module, (x, ref))
    op_macs = counted.by_operator["stdeform_attn"]  # fvcore drops the namespace
    N, S, M, D, L, K = 1, x.shape[1], 4, D_MODEL // 4, 2, 4
    assert op_macs == stdeform_macs((N, S, M, D), (N, S, M, L, K, 3)) == S * M * L * K * 8 * D
    assert op_macs == backend.mac_breakdown(S, SHAPES)["sampling"]


def test_an_op_without_a_handle_is_listed_not_dropped():
    class WithErf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.special.erf(self.linear(x)).cumsum(-1)

    counted = count_fvcore(WithErf(), (torch.randn(2, 8),))
    assert counted.total_macs == 2 * 8 * 8
    assert "aten::special_erf" in counted.unsupported or "aten::erf" in counted.unsupported
    assert "aten::cumsum" in counted.unsupported


@pytest.mark.parametrize("exponent", [1.0, 2.0, 0.5])
def test_loglog_fit_recovers_known_exponents(exponent):
    tokens = torch.tensor([680, 1360, 2720, 5440, 10880], dtype=torch.float64)
    noise = 1 + 0.01 * torch.sin(tokens)  # small deterministic wiggle
    slope, scale = loglog_slope(tokens, 3e-6 * tokens**exponent * noise)
    assert slope == pytest.approx(exponent, abs=0.02)
    assert scale == pytest.approx(3e-6, rel=0.2)


def test_loglog_fit_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least 2"):
        loglog_slope([10, 10], [1.0, 2.0])


@pytest.mark.parametrize(
    "backend",
    [
        "full:impl=sdpa",
        "stdeform:mode=3d,n_points=4",
        "divided",
        "window:size=4x3x3",
        "neighborhood",
    ],
)
def test_model_flops_case_components_add_up_and_match_the_formulas(backend):
    from bench.measure.cases import flops_case
    from bench.method import method_fields
    from models import attention_specs, get_preset

    case = {
        "kind": "flops",
        "preset": "quick",
        **method_fields(attention_specs(get_preset("quick"), backend)),
        "overrides": {"enc_layers": 2, "dec_layers": 1},
        "device": "cpu",
        "threads": 1,
        "input": {"T": 6, "height": 64, "width": 64},
    }
    records = flops_case(case)
    value = {(r["component"], r["counter"]): r["value"] for r in records}
    parts = ("backbone", "encoder", "decoder", "heads")
    assert sum(value[p, "fvcore"] for p in parts) == pytest.approx(value["model", "fvcore"])
    assert value["encoder_layer", "fvcore"] == pytest.approx(value["encoder_layer", "analytic"])
    assert value["encoder_attention", "fvcore"] == pytest.approx(
        value["encoder_attention", "analytic"]
    )
    assert value["encoder", "fvcore"] == pytest.approx(2 * value["encoder_layer", "fvcore"])
    # FlopCounterMode has no formula for normalisation and upsampling, which fvcore counts
    assert (
        0.9 * value["model", "fvcore"] < value["model", "flop_counter"] <= value["model", "fvcore"]
    )
    assert all(r["status"] == "ok" and r["unit"] == "GMAC" for r in records)
