"""How a model's attention is named in results and tables.

A method is the pair of attention specs a model is built with (models.attention_specs). Results
record it as case fields

    backend   the encoder's backend name          e.g. "stdeform"
    options   the encoder spec's identity         e.g. {"mode": "frames", "n_points": 16, ...}
    decoder   {"backend", "options"} of the decoder, only when it is not the one the encoder
              implies (the same spec; the dense decoder of an encoder-only backend)

and tables show ``method_label``: the backends' own labels (attention.base.AttentionBackend.label),
"A enc + B dec" for a hybrid.
"""

from attention.registry import BackendSpec, parse_backend
from models import ENCODER_ONLY_DECODER


def implied_decoder(encoder: BackendSpec) -> BackendSpec:
    """The decoder a model built from the encoder's spec alone gets."""
    return parse_backend(ENCODER_ONLY_DECODER) if encoder.encoder_only else encoder


def method_fields(specs: dict[str, BackendSpec]) -> dict:
    """The case fields of a model's {"encoder": spec, "decoder": spec}."""
    encoder, decoder = specs["encoder"], specs["decoder"]
    fields = {"backend": encoder.name, "options": encoder.identity, "decoder": None}
    if decoder != implied_decoder(encoder):
        fields["decoder"] = {"backend": decoder.name, "options": decoder.identity}
    return fields


def spec_label(backend: str | None, options: dict | None) -> str:
    """A backend's label from recorded fields; a generic "name (k=v, ...)" where the backend
    is not registered here or the options are not its own."""
    try:
        return parse_backend({"backend": backend, "options": options or {}}).label
    except (ValueError, KeyError, TypeError):
        shown = ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items()))
        return f"{backend or 'unknown'} ({shown})" if shown else str(backend or "unknown")


def method_label(backend: str | None, options: dict | None, decoder: dict | None = None) -> str:
    """e.g. "stdeform frames K=16", "full (sdpa)", "full (sdpa) enc + stdeform frames K=32 dec"."""
    label = spec_label(backend, options)
    if not decoder:
        return label
    return f"{label} enc + {spec_label(decoder.get('backend'), decoder.get('options'))} dec"


def slug(label: str) -> str:
    """A file-name form of a label: "stdeform frames K=16" -> "stdeform-frames-k16"."""
    out = []
    for char in label.lower().replace("=", "").replace(" + ", "+"):
        out.append(char if char.isalnum() or char in "+.x" else "-")
    return "-".join(filter(None, "".join(out).split("-")))
