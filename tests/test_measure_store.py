"""The results store and case isolation: atomic appends, tolerant reads, resumable sweeps."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bench.isolation import classify_exception, run_isolated
from bench.store import ResultsStore, case_id, record

ENV = {"device": "cpu", "threads": 1}


def test_case_id_ignores_key_order_and_changes_with_values():
    assert case_id({"a": 1, "b": [1, 2]}) == case_id({"b": [1, 2], "a": 1})
    assert case_id({"a": 1}) != case_id({"a": 2})


def test_append_and_read_back(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    first = record({"backend": "full"}, "fps", 3.5, "frames/s", ENV)
    second = record({"backend": "stdeform"}, "fps", None, "frames/s", ENV, status="OOM")
    store.append(first)
    store.append(second)
    assert store.records() == [first, second]
    assert store.finished() == {first["case_id"], second["case_id"]}
    frame = store.frame()
    assert list(frame["case.backend"]) == ["full", "stdeform"]
    assert list(frame["status"]) == ["ok", "OOM"]


def test_half_written_line_never_corrupts_the_store(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultsStore(path)
    good = record({"n": 1}, "fps", 1.0, "frames/s", ENV)
    store.append(good)
    with open(path, "a") as f:  # a crash in the middle of a write
        f.write('{"case_id": "abc", "metric": "fp')
    later = record({"n": 2}, "fps", 2.0, "frames/s", ENV)
    store.append(later)
    with pytest.warns(RuntimeWarning, match="malformed"):
        records = store.records()
    assert records == [good, later]


def test_errors_are_retried_only_on_request(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    failed = record({"n": 1}, "fps", None, "frames/s", ENV, status="error: boom")
    store.append(failed)
    assert failed["case_id"] in store.finished()
    assert failed["case_id"] not in store.finished(retry_errors=True)


def test_concurrent_appends_keep_every_line_whole(tmp_path):
    path = tmp_path / "r.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        from bench.store import ResultsStore, record
        store = ResultsStore({str(path)!r})
        for i in range(50):
            store.append(record({{"w": sys.argv[1], "i": i}}, "x", i, "u", {{}}, pad="y" * 5000))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = path.read_text().splitlines()
    assert len(lines) == 150
    assert all(json.loads(line)["pad"] == "y" * 5000 for line in lines)


# Targets for run_isolated: importable functions in this test module.
def returns_value(x):
    return {"double": 2 * x}


def raises_oom():
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def allocates_too_much():
    return bytearray(64 << 30)  # 64 GiB under an 8 GiB address-space limit


def raises_value_error():
    raise ValueError("bad shape")


def sleeps():
    import time

    time.sleep(60)


def kills_itself():
    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.fixture
def in_tests_dir(monkeypatch):
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])
    )


def test_isolated_case_returns_its_result(in_tests_dir):
    outcome = run_isolated("test_measure_store:returns_value", {"x": 21}, timeout=120)
    assert outcome.status == "ok"
    assert outcome.result == {"double": 42}


@pytest.mark.parametrize(
    ("target", "kwargs", "status"),
    [
        ("test_measure_store:raises_oom", {}, "OOM"),
        ("test_measure_store:allocates_too_much", {}, "OOM"),
        ("test_measure_store:raises_value_error", {}, "error: ValueError: bad shape"),
        ("test_measure_store:kills_itself", {}, "error: crashed with SIGSEGV"),
    ],
)
def test_failures_become_statuses(in_tests_dir, target, kwargs, status):
    outcome = run_isolated(target, kwargs, timeout=120, memory_limit_bytes=8 << 30)
    assert outcome.status == status
    assert outcome.result is None


def test_timeout_kills_the_case(in_tests_dir):
    outcome = run_isolated("test_measure_store:sleeps", {}, timeout=3)
    assert outcome.status == "timeout"
    assert outcome.seconds < 30


def test_classify_exception():
    assert classify_exception(MemoryError()) == "OOM"
    assert classify_exception(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "OOM"
    assert classify_exception(KeyError("x")) == "error: KeyError: 'x'"
