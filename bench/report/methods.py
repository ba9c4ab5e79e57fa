"""The methods of a report: their order, the dense reference, and each backend's complexity.

Labels come from bench.method (each backend's own label), complexity from the backend's class in
attention.registry.BACKENDS; the report keeps no table of its own per backend, so a backend added
to the registry needs no change here. The dense reference every ratio is taken against is full
attention with SDPA (``REFERENCE``), VisTR's mechanism.

Order: the reference first, then the other single-backend methods by the registry's order of
their backends (unregistered backends after, by name), each backend's methods by their options
(numbers in numeric order), then the hybrids.
"""

import pandas as pd

REFERENCE = {"backend": "full", "options": {"impl": "sdpa"}, "decoder": None}
NOT_REGISTERED = "— (backend not registered here)"


def registered() -> dict:
    """attention.registry.BACKENDS (name -> backend class)."""
    from attention.registry import BACKENDS

    return BACKENDS


def is_reference(backend, options, decoder) -> bool:
    """Whether (backend, options, decoder) is the dense reference, full (sdpa)."""
    return (
        backend == REFERENCE["backend"]
        and dict(options or {}) == REFERENCE["options"]
        and not decoder
    )


def complexity(backend: str | None) -> str:
    """The backend's asymptotic cost as its class states it."""
    backend_class = registered().get(backend)
    if backend_class is None or not backend_class.complexity:
        return NOT_REGISTERED
    return backend_class.complexity


def method_complexity(backend, decoder) -> str:
    """The encoder's complexity; a hybrid names its decoder's too."""
    if not decoder:
        return complexity(backend)
    return f"{complexity(backend)} enc, {complexity(decoder.get('backend'))} dec"


def value_key(value) -> tuple:
    """Sort key of an option value: numbers in numeric order before other values."""
    if isinstance(value, bool) or value is None:
        return (1, 0, str(value))
    if isinstance(value, int | float):
        return (0, value, "")
    return (1, 0, str(value))


def sort_key(backend, options, decoder) -> tuple:
    """Reference first, then by the registry's order of backends, options, hybrids last."""
    names = list(registered())
    rank = names.index(backend) if backend in names else len(names)
    ordered = [(key, value_key(value)) for key, value in sorted((options or {}).items())]
    decoder_key = ()
    if decoder:
        decoder_key = sort_key(decoder.get("backend"), decoder.get("options"), None)
    return (
        not is_reference(backend, options, decoder),
        bool(decoder),
        rank,
        str(backend),
        ordered,
        decoder_key,
    )


def methods_of(*frames: pd.DataFrame) -> pd.DataFrame:
    """Distinct (method, backend, options, decoder) across frames, in the report's order."""
    columns = ["method", "backend", "options", "decoder"]
    parts = [f[columns] for f in frames if not f.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    methods = pd.concat(parts).drop_duplicates("method").reset_index(drop=True)
    order = sorted(
        range(len(methods)),
        key=lambda i: sort_key(*(methods[c].iloc[i] for c in columns[1:])),
    )
    return methods.iloc[order].reset_index(drop=True)


def reference_label(frame: pd.DataFrame) -> str | None:
    """The label of the dense reference among the frame's methods, or None if absent."""
    for row in methods_of(frame).itertuples(index=False):
        if is_reference(row.backend, row.options, row.decoder):
            return row.method
    return None
