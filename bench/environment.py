"""Where a measurement was taken: device, versions, threads, commit, date."""

import datetime
import functools
import os
import platform
import subprocess
from pathlib import Path

import torch


def device_name(device: str = "cpu") -> str:
    """A human-readable name of the device: the GPU's name, or the CPU model."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_commit() -> str:
    """The repository's HEAD commit (with "-dirty" if the tree has changes), or "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("VISBENCH_COMMIT", "unknown")
    return commit + ("-dirty" if dirty else "")


def environment(device: str = "cpu") -> dict:
    """The environment record stored with every measurement."""
    kind = torch.device(device).type
    return {
        "device": kind,
        "device_name": device_name(device),
        "device_count": torch.cuda.device_count() if kind == "cuda" else 1,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if kind == "cuda" else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
