"""Run each benchmark case in its own subprocess, so that a crash is a result, not the end.

``run_isolated("bench.measure.cases:fps_case", {...}, timeout=600)`` starts
``python -m bench.isolation`` which imports the target, calls it with the keyword arguments and
writes its return value (JSON) to a file. Out-of-memory (CUDA or host: torch.OutOfMemoryError,
MemoryError, allocator failures, or a SIGKILL from the kernel's OOM killer), a timeout or any
other failure comes back as a status — "OOM", "timeout", "error: <message>" — and the sweep goes on.
On the host an optional address-space limit makes a runaway allocation fail inside the case
instead of swapping the machine to a halt.
"""

import dataclasses
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from bench.atomic import write_atomic

OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "std::bad_alloc",
    "memoryerror",
)


@dataclasses.dataclass
class CaseOutcome:
    """What a case subprocess gave: status "ok" with its JSON result, or a failure status."""

    status: str
    result: object = None
    message: str = ""
    seconds: float = 0.0


def classify_exception(error: BaseException) -> str:
    """ "OOM" for out-of-memory errors of any device, else "error: <type>: <message>"."""
    text = f"{type(error).__name__}: {error}"
    torch = sys.modules.get("torch")  # only if the case imported it
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if isinstance(error, MemoryError) or (oom_type is not None and isinstance(error, oom_type)):
        return "OOM"
    if any(marker in text.lower() for marker in OOM_MARKERS):
        return "OOM"
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"error: {first_line[:300]}"


def _limit_memory(limit_bytes: int | None):
    def apply() -> None:
        os.setsid()  # own process group: a timeout kills the case and its children
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_isolated(
    target: str,
    kwargs: dict,
    timeout: float,
    memory_limit_bytes: int | None = None,
    env: dict | None = None,
    stream: bool = False,
) -> CaseOutcome:
    """Run ``module:function(**kwargs)`` in a fresh Python process and classify the outcome.

    With ``stream`` the case's output (progress bars included) is passed through to stderr as
    it comes; either way its last lines are kept for the failure message.
    """
    with tempfile.TemporaryDirectory(prefix="visbench-case-") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(spec_path, "w") as f:
            json.dump({"target": target, "kwargs": kwargs, "out": out_path}, f)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.isolation", spec_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=_limit_memory(memory_limit_bytes),
        )
        tail = bytearray()
        reader = threading.Thread(target=_pump, args=(process.stdout, tail, stream), daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            reader.join(timeout=10)
            return CaseOutcome(
                "timeout", None, f"exceeded {timeout:.0f} s", time.perf_counter() - started
            )
        reader.join(timeout=10)
        seconds = time.perf_counter() - started
        if os.path.exists(out_path):
            with open(out_path) as f:
                answer = json.load(f)
            return CaseOutcome(
                answer["status"], answer.get("result"), answer.get("message", ""), seconds
            )
        last_lines = "\n".join(tail.decode(errors="replace").strip().splitlines()[-5:])
        if process.returncode == -signal.SIGKILL:
            return CaseOutcome("OOM", None, "killed by SIGKILL (the kernel's OOM killer?)", seconds)
        if process.returncode < 0:
            name = signal.Signals(-process.returncode).name
            return CaseOutcome(f"error: crashed with {name}", None, last_lines, seconds)
        return CaseOutcome(
            f"error: exited with code {process.returncode}", None, last_lines, seconds
        )


def _pump(pipe, tail: bytearray, stream: bool, keep: int = 64 * 1024) -> None:
    """Copy a child's output to stderr (if streaming) and keep its last ``keep`` bytes."""
    while chunk := pipe.read1(4096) if hasattr(pipe, "read1") else pipe.read(4096):
        if stream:
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        tail += chunk
        del tail[:-keep]
    pipe.close()


def _worker(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    module_name, function_name = spec["target"].split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        answer = {"status": "ok", "result": function(**spec["kwargs"])}
        code = 0
    except BaseException as error:  # noqa: BLE001 — every failure becomes a recorded status
        answer = {"status": classify_exception(error), "message": traceback.format_exc()[-2000:]}
        code = 1
    write_atomic(spec["out"], json.dumps(answer, default=str))
    return code


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
