"""How a backend and its options are named in the report, their order, and asymptotic cost."""

import pandas as pd

BUILT_IN_COMPLEXITY = {"full": "O(H²W²T²C)", "stdeform": "O(HWTCK)"}
BACKEND_ORDER = ("full", "stdeform")


def method_label(backend: str | None, options: dict | None) -> str:
    """Display name: full (sdpa), stdeform 3d K=32, stdeform frames K=4 window=3, x (a=1)."""
    options = dict(options or {})
    backend = backend or "unknown"
    if backend == "full" and set(options) == {"impl"}:
        return f"full ({options['impl']})"
    if backend == "stdeform" and {"mode", "K"} <= set(options):
        label = f"stdeform {options.pop('mode')} K={options.pop('K')}"
        return " ".join([label, *(f"{k}={v}" for k, v in sorted(options.items()) if v is not None)])
    if not options:
        return backend
    return f"{backend} ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})"


def method_sort_key(backend: str | None, options: dict | None) -> tuple:
    """full before stdeform before others; then options, numbers in numeric order."""
    backend = backend or ""
    rank = BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else len(BACKEND_ORDER)
    ordered_options = [
        (key, (0, value, "") if isinstance(value, int | float) else (1, 0, str(value)))
        for key, value in sorted((options or {}).items())
    ]
    return (rank, backend, ordered_options)


def complexity_source() -> tuple[dict[str, str], str]:
    """Each backend's complexity string and its source: the registry, else the built-in map."""
    try:
        from attention.registry import BACKENDS
    except Exception:  # noqa: BLE001 — the report renders without the attention package
        fallback = "the report's built-in map (attention.registry could not be imported)"
        return dict(BUILT_IN_COMPLEXITY), fallback
    found = {name: cls.complexity for name, cls in BACKENDS.items() if cls.complexity}
    return {**BUILT_IN_COMPLEXITY, **found}, "attention.registry.BACKENDS"


def methods_of(*frames: pd.DataFrame) -> pd.DataFrame:
    """Distinct (method, backend, options) across frames, in the report's order."""
    parts = [f[["method", "backend", "options"]] for f in frames if not f.empty]
    if not parts:
        return pd.DataFrame(columns=["method", "backend", "options"])
    methods = pd.concat(parts).drop_duplicates("method")
    order = sorted(
        range(len(methods)),
        key=lambda i: method_sort_key(methods["backend"].iloc[i], methods["options"].iloc[i]),
    )
    return methods.iloc[order].reset_index(drop=True)
