"""Backends by name, and the spec that names one with its options.

    spec = parse_backend("stdeform:mode=frames,n_points=32")   # every option gets a value
    str(spec)       -> "stdeform:mode=frames,n_points=32,window=none,impl=op"
    spec.identity   -> the identifying options, as results record them
    spec.label      -> "stdeform frames K=32", as tables show it
    attention = build_attention(spec, d_model=96, n_heads=4, n_levels=1, n_frames=6)

Adding a backend is one module defining an ``AttentionBackend`` subclass with its vocabulary
(attention/base.py) plus one line in ``BACKENDS``.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from attention.base import AttentionBackend
from attention.divided import DividedAttention
from attention.full import FullAttention
from attention.neighborhood import NeighborhoodAttention
from attention.options import Option, split_spec
from attention.stdeform import STDeformAttention
from attention.window import WindowAttention

BACKENDS: dict[str, type[AttentionBackend]] = {
    "full": FullAttention,
    "stdeform": STDeformAttention,
    "divided": DividedAttention,
    "window": WindowAttention,
    "neighborhood": NeighborhoodAttention,
}


def backend_class(name: str) -> type[AttentionBackend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; registered: {', '.join(BACKENDS)}")
    return BACKENDS[name]


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A backend and a value for each of its options (declaration order)."""

    name: str
    values: tuple[tuple[str, Any], ...]

    @property
    def backend(self) -> type[AttentionBackend]:
        return backend_class(self.name)

    @property
    def options(self) -> dict:
        """Every option's value."""
        return dict(self.values)

    @property
    def identity(self) -> dict:
        """The options that identify the method in results (JSON-ready: triples as lists)."""
        return {
            o.name: list(v) if isinstance(v := self.options[o.name], tuple) else v
            for o in self.backend.OPTIONS
            if o.identifies
        }

    @property
    def label(self) -> str:
        return self.backend.label(self.options)

    @property
    def encoder_only(self) -> bool:
        return self.backend.encoder_only

    def replace(self, **changes) -> "BackendSpec":
        """The same backend with some options changed (validated)."""
        return make_spec(self.name, {**self.options, **changes})

    def __str__(self) -> str:
        options = self.backend.OPTIONS
        written = ",".join(f"{o.name}={o.format(self.options[o.name])}" for o in options)
        return f"{self.name}:{written}" if written else self.name


def known_options(name: str, given, where: str) -> dict[str, Option]:
    """The declared options of backend ``name`` by name; a ValueError naming any of ``given``
    that it does not declare (``where``: how the caller names what it is reading)."""
    known = {o.name: o for o in backend_class(name).OPTIONS}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(
            f"{where}: unknown option(s) {', '.join(unknown)}; "
            f"{name} takes {', '.join(known) or 'no options'}"
        )
    return known


def make_spec(name: str, values: Mapping[str, Any], defaults: Mapping | None = None) -> BackendSpec:
    """A spec from Python values (e.g. results' options); missing options take ``defaults``
    (e.g. a preset's), then the option's own default."""
    backend = backend_class(name)
    known_options(name, values, f"backend {name}")
    defaults = defaults or {}
    resolved = {}
    for option in backend.OPTIONS:
        value = values.get(option.name, defaults.get(option.name, option.default))
        resolved[option.name] = option.validate(value, f"backend {name}")
    backend.check_options(resolved)
    return BackendSpec(name, tuple(resolved.items()))


def parse_backend(
    spec: "str | BackendSpec | Mapping", defaults: Mapping[str, Mapping] | None = None
) -> BackendSpec:
    """A spec from ``name[:option=value,...]``, a BackendSpec, or a mapping with "backend" and
    "options" (as results store it). ``defaults``: per backend name, option values used where the
    spec names none (a preset's, e.g. {"stdeform": {"n_points": 16}})."""
    if isinstance(spec, BackendSpec):
        return spec
    if isinstance(spec, Mapping):
        name, values = spec["backend"], dict(spec.get("options") or {})
    else:
        name, texts = split_spec(spec)
        known = known_options(name, texts, f"backend spec {spec!r}")
        values = {key: known[key].parse(text, f"backend {name}") for key, text in texts.items()}
    return make_spec(name, values, (defaults or {}).get(name))


def build_attention(spec: "str | BackendSpec | Mapping", **structure) -> AttentionBackend:
    """Instantiate a backend: ``structure`` holds d_model, n_heads and, as the model supplies
    them, n_levels, n_frames and layer_index."""
    spec = parse_backend(spec)
    return spec.backend(**structure, **spec.options)
