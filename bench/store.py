"""The results store: one JSON object per line, appended atomically, read back tolerantly.

Every measurement, training evaluation or case failure is one line. Appends take an exclusive
lock, start on a fresh line even if a crash left a half-written one, and are flushed and
fsynced, so a killed sweep never loses a finished line and never corrupts the next one.
Unparseable lines (a crash mid-write) are skipped with a warning when reading.

A record has the fields of ``record()``: case (the configuration that identifies what was
measured), case_id (a hash of it), metric, value, unit, status ("ok", "OOM", "timeout",
"error: ..."), env (bench.environment.environment()) and free-form extra fields.
"""

import fcntl
import hashlib
import json
import os
import warnings
from pathlib import Path

import pandas as pd

FINAL_STATUSES = ("ok", "OOM", "timeout")


def case_id(case: dict) -> str:
    """A stable short hash of a case's configuration (key order does not matter)."""
    text = json.dumps(case, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def record(
    case: dict, metric: str, value, unit: str, env: dict, status: str = "ok", **extra
) -> dict:
    """One measurement line."""
    return {
        "case_id": case_id(case),
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "status": status,
        "env": env,
        **extra,
    }


class ResultsStore:
    """Append-only JSON-lines file of results."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, *records: dict) -> None:
        """Append records atomically (one locked, fsynced write)."""
        if not records:
            return
        payload = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                payload = "\n" + payload  # a crash left a partial line: do not glue onto it
            data = payload.encode()
            while data:
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def records(self) -> list[dict]:
        """All well-formed records, in file order."""
        if not self.path.exists():
            return []
        good = []
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    good.append(json.loads(line))
                except json.JSONDecodeError:
                    warnings.warn(
                        f"{self.path}:{number}: skipping a malformed (partly written?) line",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return good

    def finished(self, retry_errors: bool = False) -> set[str]:
        """case_ids with a final status; with retry_errors, cases that errored are not final."""
        done = set()
        for r in self.records():
            status = str(r.get("status", ""))
            if status in FINAL_STATUSES or (not retry_errors and status.startswith("error")):
                done.add(r.get("case_id"))
        return done

    def frame(self) -> pd.DataFrame:
        """The records as a tidy table: case fields and env fields flattened with prefixes."""
        records = self.records()
        if not records:
            return pd.DataFrame()
        return pd.json_normalize(records, sep=".")
