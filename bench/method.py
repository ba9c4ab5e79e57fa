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

import dataclasses

from attention.registry import BackendSpec, parse_backend
from models import ENCODER_ONLY_DECODER, attention_specs


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


@dataclasses.dataclass(frozen=True)
class Setting:
    """One configuration of the ablation: the encoder's and the decoder's attention."""

    encoder: BackendSpec
    decoder: BackendSpec

    @property
    def fields(self) -> dict:
        return method_fields({"encoder": self.encoder, "decoder": self.decoder})

    @property
    def label(self) -> str:
        fields = self.fields
        return method_label(fields["backend"], fields["options"], fields["decoder"])


def plan_settings(preset, backends, k=(), hybrids=()) -> list[Setting]:
    """The configurations in order: each spec of ``backends`` for both sides (one per K in ``k``
    where its backend has n_points), then each "ENCODER/DECODER" pair of ``hybrids``;
    duplicates dropped. Every spec is checked here (ValueError naming what is wrong)."""
    settings = []
    for text in backends:
        specs = attention_specs(preset, text)
        encoder = specs["encoder"]
        if k and "n_points" in encoder.options:
            for points in sorted(set(k)):
                with_k = encoder.replace(n_points=points)
                pure = specs["decoder"] == encoder
                settings.append(Setting(with_k, with_k if pure else specs["decoder"]))
        else:
            settings.append(Setting(specs["encoder"], specs["decoder"]))
    for text in hybrids:
        encoder, _, decoder = text.partition("/")
        if not decoder:
            raise ValueError(f"--hybrids expects ENCODER/DECODER specs, got {text!r}")
        specs = attention_specs(preset, encoder=encoder, decoder=decoder)
        settings.append(Setting(specs["encoder"], specs["decoder"]))
    return list(dict.fromkeys(settings))
