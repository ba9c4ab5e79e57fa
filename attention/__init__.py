"""Attention backends for the VIS model and the spatio-temporal deformable attention op."""

from attention.extension import ExtensionInfo, load_extension
from attention.stdeform_op import register_op, stdeform_attn, stdeform_impl
from attention.stdeform_reference import stdeform_attn_reference, stdeform_attn_reference_backward

__all__ = [
    "ExtensionInfo",
    "load_extension",
    "register_op",
    "stdeform_attn",
    "stdeform_attn_reference",
    "stdeform_attn_reference_backward",
    "stdeform_impl",
]
