"""Backend vocabulary: options parse, validate and round-trip; bad specs are one-line errors."""

import pytest

from attention.options import Option, split_spec
from attention.registry import BACKENDS, build_attention, make_spec, parse_backend


def test_a_spec_string_fills_every_option_and_round_trips():
    spec = parse_backend("stdeform:mode=frames,n_points=8")
    assert spec.options == {"mode": "frames", "n_points": 8, "window": None, "impl": "op"}
    assert parse_backend(str(spec)) == spec
    assert spec.label == "stdeform frames K=8"
    assert parse_backend("full").options == {"impl": "sdpa"}


@pytest.mark.parametrize(
    "text, options, label",
    [
        ("divided", {"impl": "sdpa"}, "divided"),
        ("divided:impl=math", {"impl": "math"}, "divided (math)"),
        ("window", {"size": (2, 4, 4), "shift": True, "impl": "sdpa"}, "window 2x4x4"),
        (
            "window:size=1x7x7,shift=false,impl=math",
            {"size": (1, 7, 7), "shift": False, "impl": "math"},
            "window 1x7x7 unshifted (math)",
        ),
        ("neighborhood", {"kernel": (3, 5, 5), "impl": "masked"}, "neighborhood 3x5x5"),
        ("neighborhood:kernel=1x3x3,impl=flex", {"kernel": (1, 3, 3), "impl": "flex"},
         "neighborhood 1x3x3 (flex)"),
    ],
)  # fmt: skip
def test_grid_backends_specs_round_trip(text, options, label):
    spec = parse_backend(text)
    assert spec.options == options and spec.label == label and spec.encoder_only
    assert parse_backend(str(spec)) == spec
    assert parse_backend({"backend": spec.name, "options": spec.identity}) == spec


def test_defaults_come_from_the_caller_before_the_option():
    spec = parse_backend("stdeform", defaults={"stdeform": {"n_points": 16}})
    assert spec.options["n_points"] == 16
    assert (
        parse_backend("stdeform:n_points=4", {"stdeform": {"n_points": 16}}).options["n_points"]
        == 4
    )


def test_results_form_gives_the_same_spec():
    spec = parse_backend("stdeform:mode=3d,n_points=32")
    assert parse_backend({"backend": "stdeform", "options": spec.identity}) == spec


@pytest.mark.parametrize(
    "text, words",
    [
        ("stdeform:n_points=0", ["n_points", ">= 1", "0"]),
        ("stdeform:n_points=abc", ["n_points", "integer", "abc"]),
        ("stdeform:mode=x", ["mode", "3d | frames | frame", "'x'"]),
        ("stdeform:window=2", ["window", "mode=frames"]),
        ("nope", ["unknown attention backend", "full"]),
        ("stdeform:foo=1", ["unknown option", "foo", "n_points"]),
        ("stdeform:n_points", ["option=value", "n_points"]),
        ("stdeform:n_points=2,n_points=3", ["given twice"]),
        ("", ["expected name"]),
    ],
)
def test_a_bad_spec_is_a_one_line_error_naming_what_is_wrong(text, words):
    with pytest.raises(ValueError) as error:
        parse_backend(text)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_option_kinds_parse_and_format():
    triple = Option("size", "int3", (2, 4, 4), minimum=1)
    assert triple.parse("3x5x7") == (3, 5, 7)
    assert triple.format((3, 5, 7)) == "3x5x7"
    assert triple.validate([1, 2, 3]) == (1, 2, 3)
    for bad in ("3x5", "0x1x1", "axbxc"):
        with pytest.raises(ValueError, match="size"):
            triple.parse(bad)
    flag = Option("shift", "bool", True)
    assert flag.parse("false") is False
    with pytest.raises(ValueError, match="shift"):
        flag.parse("maybe")
    number = Option("scale", "float", 1.0, minimum=0)
    assert number.parse("0.5") == 0.5
    with pytest.raises(ValueError):
        number.validate(True)
    with pytest.raises(ValueError):
        Option("x", "complex", 0)


def test_split_spec_keeps_values_as_text():
    assert split_spec("window:size=2x4x4, shift=true") == (
        "window",
        {"size": "2x4x4", "shift": "true"},
    )


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_builds_from_its_default_spec_and_reports_its_identity(name):
    spec = make_spec(name, {})
    attention = build_attention(spec, d_model=24, n_heads=4, n_levels=1, n_frames=2, layer_index=0)
    assert attention.options() == {k: v for k, v in spec.identity.items()}
    assert attention.complexity.startswith("O(")
    assert spec.label
