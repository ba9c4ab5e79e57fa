"""Which presets, devices and environments a set of records comes from, in words for captions,
and the order devices are shown in."""

import pandas as pd

PRESET_ORDER = {"paper": 0, "quick": 1}


def env_ids(*frames: pd.DataFrame) -> list[str]:
    """The environment ids used by these records, sorted (E1, E2, ...)."""
    ids = set()
    for frame in frames:
        if not frame.empty:
            ids.update(frame["env_id"].dropna())
    return sorted(ids, key=lambda i: int(i[1:]))


def measured_in(ids: list[str], environments: pd.DataFrame) -> str:
    """A table's note, e.g. "Measured in E1 (Intel Xeon × 1, 2 threads, torch 2.5.1); ..."."""
    if not ids:
        return "No measurements."
    by_id = environments.set_index("env_id")
    parts = []
    for env_id in ids:
        env = by_id.loc[env_id]
        parts.append(
            f"{env_id} ({env['device_name']} × {env['device_count']}, {env['threads']} threads, "
            f"torch {env['torch']})"
        )
    return "Measured in " + ", ".join(parts) + "; see Environment."


def input_shape(inputs) -> str:
    """T×H×W of a model case's input dict, or "?" when not recorded."""
    if not isinstance(inputs, dict) or not inputs:
        return "?"
    return f"{inputs.get('T', '?')}×{inputs.get('height', '?')}×{inputs.get('width', '?')}"


def preset_key(value) -> tuple:
    """Sort key: the paper preset first, then quick, then others by name."""
    return (PRESET_ORDER.get(value, 2), str(value))


def short_device(name) -> str:
    """A device name short enough for a column heading: "Intel Xeon @ 2.20GHz", "H100 80GB HBM3"."""
    text = str(name)
    for noise in ("(R)", "(TM)", "NVIDIA ", " CPU"):
        text = text.replace(noise, "")
    return " ".join(text.split())


def ordered_devices(frame: pd.DataFrame) -> list[str]:
    """The device names of the records: accelerators (env device other than cpu) first, as the
    poster's figures are GPU figures, then CPUs; by name within each."""
    if frame.empty:
        return []
    pairs = frame[["device_name", "env_device"]].drop_duplicates()
    ranked = {name: (device == "cpu", str(name)) for name, device in pairs.itertuples(index=False)}
    return sorted(ranked, key=lambda name: ranked[name])
