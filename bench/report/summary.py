"""summary.json: the headline as numbers, and the record of which results a folder was rendered
from, so that a report is never silently overwritten by one of other results.

summary.json holds ``results`` (the results folder, relative to the report's folder, so that the
committed reports/ and reports/data/ move together), ``digest`` (bench.report.load.digest of its
files), ``reference`` and ``columns`` (key, title, unit, source) and one row per method with each
cell as numbers: value, low, high, n, unit, source (and missing, noisy, note, spread, the ratio to
dense with its verdict where they apply). A comparison folder holds comparison.json with the two
results folders instead.

``check_overwrite`` refuses (ValueError, one line naming both folders) to render into a folder
whose marker file names other results, unless forced.
"""

import json
import math
import os
from pathlib import Path

SUMMARY = "summary.json"
COMPARISON = "comparison.json"


def relative(path: Path, out_dir: Path) -> str:
    """``path`` as seen from ``out_dir`` (absolute when on another drive)."""
    try:
        return os.path.relpath(path.resolve(), out_dir.resolve())
    except ValueError:
        return str(path.resolve())


def recorded(out_dir: Path) -> tuple[str, list[Path]] | None:
    """(marker file name, the results folders it records, resolved), or None for a folder
    without a report."""
    for name, field in ((SUMMARY, "results"), (COMPARISON, "compared")):
        path = out_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return name, []
        folders = data.get(field)
        folders = [folders] if isinstance(folders, str) else list(folders or [])
        return name, [(out_dir / folder).resolve() for folder in folders]
    return None


def check_overwrite(results: list[Path], out_dir: Path, force: bool) -> None:
    """Refuse to render ``results`` into ``out_dir`` when it holds a report of other results."""
    found = recorded(out_dir)
    if force or found is None:
        return
    name, folders = found
    wanted = [Path(r).resolve() for r in results]
    expected = SUMMARY if len(wanted) == 1 else COMPARISON
    if name == expected and folders == wanted:
        return
    held = " and ".join(str(f) for f in folders) or "unknown results"
    given = " and ".join(str(w) for w in wanted)
    raise ValueError(
        f"--out {out_dir} holds a report rendered from {held} ({name}), not from {given}; "
        "pass --force to overwrite it"
    )


def finite(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None, so the JSON is valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def write_summary(out_dir: Path, results_dir: Path, digest: str, table: dict) -> Path:
    """summary.json with the headline ``table`` ({"reference", "columns", "rows"})."""
    data = {"results": relative(Path(results_dir), out_dir), "digest": digest, **table}
    path = out_dir / SUMMARY
    path.write_text(json.dumps(finite(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_comparison(out_dir: Path, folders: list[Path], digests: list[str]) -> Path:
    data = {"compared": [relative(Path(f), out_dir) for f in folders], "digests": digests}
    path = out_dir / COMPARISON
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
