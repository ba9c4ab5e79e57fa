"""The files of one training run, and the rules for starting, resuming and finishing it.

    <out>/<run>/config.json     the run's settings (written once, when the run starts)
    <out>/<run>/checkpoint.pt   model, optimizer and log line of the last evaluation (atomic)
    <out>/<run>/log.jsonl       one JSON line per evaluation
    <out>/<run>/final.json      the summary; its presence means the run is finished

A run is identified by its settings' identity (TrainConfig.identity). ``claim`` refuses a run
directory whose recorded identity differs, naming the settings that differ, before any file is
touched; a finished run is never trained again. A checkpoint is written before its log line, so
after a kill ``resume`` restores the log to the checkpoint: lines past it go, a line the kill
prevented comes back from the checkpoint, and an unterminated last line (a kill mid-write) is
dropped with a warning. Checkpoints are loaded with ``weights_only=True``: they hold only tensors,
numbers, strings and containers, and a planted file cannot run code.

A run whose identity, all but its name, is that of a finished run in the same folder would train
the same model again (bit for bit on the CPU; up to kernel nondeterminism on a GPU): ``adopt``
takes that run's log and summary under its own name, recording ``reused_from``, instead of
training again (the lr sweep's run at the chosen rate is the ablation's run at that seed).
``finished_twin`` finds such a run.
"""

import json
import math
import warnings
from pathlib import Path

import torch

from bench.atomic import save_atomic, write_atomic


class RunMismatch(ValueError):
    """A run directory holds a run with other identifying settings."""


class RunFiles:
    """The files of the run in ``directory``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.config = self.directory / "config.json"
        self.checkpoint = self.directory / "checkpoint.pt"
        self.log = self.directory / "log.jsonl"
        self.final = self.directory / "final.json"

    def claim(self, config: dict, identity: dict) -> None:
        """Start the run (record ``config`` with its ``identity``) or check that the recorded one
        is the same run; raises RunMismatch, touching nothing, when it is not."""
        if self.config.exists():
            recorded = json.loads(self.config.read_text()).get("identity", {})
            differ = sorted(
                key
                for key in set(recorded) | set(identity)
                if recorded.get(key, "<unset>") != identity.get(key, "<unset>")
            )
            if differ:
                shown = "; ".join(
                    f"{key}: recorded {recorded.get(key, '<unset>')!r}, "
                    f"now {identity.get(key, '<unset>')!r}"
                    for key in differ
                )
                raise RunMismatch(
                    f"run directory {self.directory} holds a run with other settings ({shown}); "
                    "choose another --name or --out, or delete that directory to start over"
                )
            return
        if self.log.exists() or self.checkpoint.exists() or self.final.exists():
            raise RunMismatch(
                f"run directory {self.directory} holds run files but no config.json; "
                "choose another --name or --out"
            )
        write_atomic(self.config, json.dumps({**config, "identity": identity}, indent=2))

    def finished(self) -> dict | None:
        """The final summary of a finished run, or None."""
        return json.loads(self.final.read_text()) if self.final.exists() else None

    def load_checkpoint(self, map_location) -> dict | None:
        if not self.checkpoint.exists():
            return None
        return torch.load(self.checkpoint, map_location=map_location, weights_only=True)

    def resume(self, checkpoint: dict | None) -> None:
        """Make the log agree with ``checkpoint`` (None: the run starts afresh, no log)."""
        if checkpoint is None:
            self.log.unlink(missing_ok=True)  # written by this run before its first checkpoint
            return
        iteration = checkpoint["iteration"]
        lines = [line for line in self.read_log(repair=True) if line["iteration"] <= iteration]
        if not lines or lines[-1]["iteration"] < iteration:
            lines.append(checkpoint["log_line"])
        write_atomic(self.log, "".join(json.dumps(line) + "\n" for line in lines))

    def save(self, state: dict, line: dict) -> None:
        """Checkpoint (atomically, with its log line), then append the line to the log."""
        save_atomic(self.checkpoint, {**state, "log_line": line})
        with open(self.log, "a") as f:
            f.write(json.dumps(line) + "\n")

    def read_log(self, repair: bool = False) -> list[dict]:
        """The evaluation lines in order. With ``repair``, an unterminated last line (a kill
        mid-write) is dropped with a warning; any other malformed line is a ValueError."""
        if not self.log.exists():
            return []
        text = self.log.read_text()
        if repair and text and not text.endswith("\n"):
            torn = text[text.rfind("\n") + 1 :]
            warnings.warn(
                f"{self.log}: dropping an unterminated last line ({len(torn)} characters; "
                "the run was killed while writing it)",
                RuntimeWarning,
                stacklevel=2,
            )
            text = text[: len(text) - len(torn)]
        lines = []
        for number, entry in enumerate(text.splitlines(), start=1):
            if not entry.strip():
                continue
            try:
                lines.append(json.loads(entry))
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.log}:{number}: not a JSON line ({error.msg})") from None
        return lines

    def finish(self, summary: dict) -> None:
        write_atomic(self.final, json.dumps(summary, indent=2))

    def identity(self) -> dict | None:
        """The recorded identity (None without a readable config.json)."""
        try:
            return json.loads(self.config.read_text()).get("identity")
        except (OSError, ValueError):
            return None

    def adopt(self, twin: "RunFiles", run: str) -> dict:
        """Take a finished twin's log and summary as this run's (named ``run``); the summary
        records ``reused_from``. Call after ``claim``; returns the summary."""
        lines = [{**line, "run": run} for line in twin.read_log()]
        write_atomic(self.log, "".join(json.dumps(line) + "\n" for line in lines))
        summary = {**twin.finished(), "run": run, "reused_from": twin.directory.name}
        self.finish(summary)
        return summary


def same_settings(a, b) -> bool:
    """Equal identities, numbers equal to 1e-9 relative (a swept 2e-4 x 3 is the preset's 6e-4)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_settings(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_settings(x, y) for x, y in zip(a, b, strict=True))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return math.isclose(a, b, rel_tol=1e-9) if numbers else (type(a) is type(b) and a == b)


def finished_twin(directory: str | Path, identity: dict) -> RunFiles | None:
    """A finished run beside ``directory`` with the same identity but its name, or None."""
    directory = Path(directory)
    unnamed = {k: v for k, v in identity.items() if k != "run"}
    if not directory.parent.is_dir():
        return None
    for other in sorted(directory.parent.iterdir()):
        files = RunFiles(other)
        if other == directory or not files.final.exists():
            continue
        recorded = files.identity() or {}
        same = same_settings({k: v for k, v in recorded.items() if k != "run"}, unnamed)
        if same and "run" in recorded and files.finished().get("status") == "ok":
            return files
    return None
