"""Backends by name: ``build_attention("full", impl="math")``, ``build_attention("stdeform", ...)``.

Adding a backend is one module defining an ``AttentionBackend`` subclass plus one line here.
"""

from attention.base import AttentionBackend
from attention.full import FullAttention
from attention.stdeform import STDeformAttention

BACKENDS: dict[str, type[AttentionBackend]] = {
    "full": FullAttention,
    "stdeform": STDeformAttention,
}


def build_attention(name: str, **options) -> AttentionBackend:
    """Instantiate the backend registered under ``name`` with its options."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; registered: {sorted(BACKENDS)}")
    return BACKENDS[name](**options)
