"""Whole-file writes that are atomic: a kill mid-write leaves the previous file (or none) intact.

The data goes to a temporary file beside the target (same file system), is flushed and fsynced,
then replaces the target with os.replace, which readers see as one step.
"""

import os
import tempfile
from pathlib import Path


def _replace_with(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` atomically."""
    payload = data.encode() if isinstance(data, str) else data
    _replace_with(Path(path), lambda f: f.write(payload))


def save_atomic(path: str | os.PathLike, obj) -> None:
    """torch.save ``obj`` to ``path`` atomically."""
    import torch  # here, so that modules writing only text do not pay for importing torch

    _replace_with(Path(path), lambda f: torch.save(obj, f))
