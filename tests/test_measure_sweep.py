"""The measurement sweep: isolated cases, failures recorded, resumable."""

import argparse
import json
import subprocess
import sys

import pytest

from bench.measure.__main__ import build_parser, model_cases, run_cases, scaling_cases
from bench.store import ResultsStore, case_id, record


def test_the_plan_measures_the_ablations_methods_at_every_preset():
    args = build_parser().parse_args(
        ["--backends", "full", "stdeform:mode=frames", "--k", "16", "32",
         "--hybrids", "full/stdeform:mode=frames,n_points=32"]
    )  # fmt: skip
    cases = [case for _, case in model_cases(args)]
    methods = {(c["backend"], json.dumps(c["options"], sort_keys=True), json.dumps(c["decoder"]))
               for c in cases}  # fmt: skip
    assert len(methods) == 4  # full, K=16, K=32, the hybrid: the same at both presets
    for preset in ("paper", "quick"):
        for kind in ("flops", "inference"):
            assert sum(c["preset"] == preset and c["kind"] == kind for c in cases) == 4
    steps = [c for c in cases if c["kind"] == "step"]
    assert {c["preset"] for c in steps} == {"quick"} and len(steps) == 4
    hybrid = next(c for c in cases if c["decoder"])
    assert (hybrid["backend"], hybrid["decoder"]["backend"]) == ("full", "stdeform")
    assert hybrid["decoder"]["options"]["n_points"] == 32
    scaling = [c for _, c in scaling_cases(args)]
    assert {c["backend"] for c in scaling} == {"full", "stdeform"}
    assert len(scaling) == 3 * 10  # one layer per distinct encoder spec, 10 sweep points


@pytest.mark.parametrize(
    "extra", [["--backends", "sparse"], ["--k", "0"], ["--repeats", "0"], ["--device", "tpu"]]
)
def test_bad_options_are_one_line_errors(tmp_path, extra):
    result = subprocess.run(
        [sys.executable, "-m", "bench.measure", "--out", str(tmp_path / "o"), *extra],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def _args(**overrides):
    values = {"retry_errors": False, "timeout": 120, "device": "cpu", "threads": 1}
    values.update(overrides)
    return argparse.Namespace(**values)


def _case(n, fail=None):
    return {
        "kind": "inference",
        "backend": "full",
        "options": {"impl": "sdpa"},
        "n": n,
        "fail": fail,
    }


def test_an_oom_case_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "fake_cases.py").write_text(
        "import torch\n"
        "from bench.store import record\n"
        "def run(case):\n"
        "    if case['fail'] == 'oom':\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 9 GiB')\n"
        "    return [record(case, 'fps', float(case['n']), 'frames/s', {})]\n"
    )
    store = ResultsStore(tmp_path / "m.jsonl")
    cases = [
        ("fake_cases:run", _case(1)),
        ("fake_cases:run", _case(2, "oom")),
        ("fake_cases:run", _case(3)),
    ]
    counts = run_cases(cases, store, _args())
    assert counts == {"skipped": 0, "ok": 2, "OOM": 1}
    by_case = {(r["case"]["n"], r["metric"]): r for r in store.records()}
    assert by_case[1, "fps"]["value"] == 1.0 and by_case[3, "fps"]["value"] == 3.0
    assert by_case[2, "fps"]["status"] == "OOM" and by_case[2, "fps"]["value"] is None
    assert by_case[2, "peak_memory"]["status"] == "OOM"  # both metrics of the case


def test_a_killed_sweep_resumes_and_skips_finished_cases(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "fake_cases.py").write_text(
        "import os, signal\n"
        "from bench.store import record\n"
        "def run(case):\n"
        "    if case['fail'] == 'kill' and not os.path.exists(case['marker']):\n"
        "        open(case['marker'], 'w').close()\n"
        "        os.kill(os.getppid(), signal.SIGKILL)  # the sweep itself dies mid-case\n"
        "    return [record(case, 'fps', float(case['n']), 'frames/s', {})]\n"
    )
    marker = str(tmp_path / "killed-once")
    cases = [
        ("fake_cases:run", {**_case(n), "fail": "kill" if n == 2 else None, "marker": marker})
        for n in (1, 2, 3)
    ]
    store_path = tmp_path / "m.jsonl"
    script = (
        "import argparse, json, sys\n"
        "from bench.measure.__main__ import run_cases\n"
        "from bench.store import ResultsStore\n"
        "cases = json.loads(sys.argv[1])\n"
        "args = argparse.Namespace(retry_errors=False, timeout=120, device='cpu', threads=1)\n"
        "print(json.dumps(run_cases([tuple(c) for c in cases], ResultsStore(sys.argv[2]), args)))\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases), str(store_path)],
        capture_output=True,
        text=True,
    )
    assert first.returncode != 0  # killed during case 2
    done = ResultsStore(store_path).finished()
    assert done == {case_id(cases[0][1])}
    second = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases), str(store_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(second.stdout.strip().splitlines()[-1]) == {"skipped": 1, "ok": 2}
    values = sorted(r["value"] for r in ResultsStore(store_path).records())
    assert values == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "first_pass_s, expected",
    [
        (0.01, (1, 5)),  # cheap: full warm-up and all repeats
        (5.5, (0, 5)),  # 5 passes fit in 30 s: repeats first, no extra warm-up
        (7.0, (0, 4)),
        (38.0, (0, 2)),  # a paper-preset CPU pass: still 2 repeats for a spread
    ],
)
def test_timing_plan_caps_repeats_to_the_time_per_case(first_pass_s, expected):
    from bench.measure.cases import _timing_plan

    case = {"warmup": 1, "repeats": 5, "seconds": 30}
    assert _timing_plan(first_pass_s, case) == expected


def test_timing_runs_exactly_the_planned_passes():
    """First (peak-memory) pass + planned warm-up + repeats, and nothing hidden besides."""
    import torch

    from bench.measure.cases import _timed_with_peak

    calls = []
    case = {"warmup": 1, "repeats": 4, "seconds": 60}
    summary, peak, memory = _timed_with_peak(lambda: calls.append(1), torch.device("cpu"), case)
    assert len(calls) == 1 + 1 + 4
    assert (summary["warmup"], summary["repeats"], len(summary["times_s"])) == (2, 4, 4)
    assert peak >= 0 and memory["method"]


@pytest.mark.parametrize(
    "backend, options",
    [("full", {"impl": "math"}), ("stdeform", {"mode": "3d", "n_points": 4})],
)
def test_scaling_case_measures_time_and_memory_of_one_layer(backend, options):
    from bench.measure.cases import scaling_case

    case = {
        "kind": "scaling",
        "backend": backend,
        "options": options,
        "T": 2,
        "H": 3,
        "W": 4,
        "d_model": 32,
        "n_heads": 4,
        "dim_feedforward": 64,
        "device": "cpu",
        "threads": 1,
        "warmup": 1,
        "repeats": 3,
        "seconds": 60,
    }
    timing, memory = scaling_case(case)
    assert (timing["metric"], memory["metric"]) == ("time", "peak_memory")
    assert timing["repeats"] == 3 and len(timing["times_s"]) == 3
    assert timing["warmup"] == 2  # the peak-memory pass and one more
    assert 0 < min(timing["times_s"]) <= timing["value"] <= max(timing["times_s"])
    assert memory["value"] >= 0 and memory["method"]
    if backend == "stdeform":  # the compiled kernel was timed, not the reference
        assert timing["op_impl"] == memory["op_impl"] == "cpu kernel"


def test_step_case_times_a_training_step_and_an_evaluation_pass():
    from bench.measure.cases import step_case
    from tests.tiny import TINY

    case = {
        "kind": "step",
        "preset": "quick",
        "backend": "stdeform",
        "options": {"mode": "frames", "n_points": 2},
        "decoder": None,
        "overrides": TINY,
        "device": "cpu",
        "threads": 1,
        "warmup": 0,
        "repeats": 2,
        "seconds": 60,
        "eval_frames": 3,
    }
    step, evaluation = step_case(case)
    assert (step["metric"], evaluation["metric"]) == ("step_time", "eval_video_time")
    for timing in (step, evaluation):
        assert timing["repeats"] == 2 and len(timing["times_s"]) == 2
        assert timing["iqr_s"] >= 0 and timing["value"] == pytest.approx(
            sorted(timing["times_s"])[0] / 2 + sorted(timing["times_s"])[1] / 2
        )
    assert step["batch_size"] == 2 and evaluation["frames"] == 3


def test_the_sweep_finishes_then_exits_non_zero_when_a_case_errors(tmp_path, monkeypatch):
    from bench.isolation import CaseOutcome
    from bench.measure import __main__ as measure

    seen = []

    def fake(target, kwargs, **_):
        seen.append(kwargs["case"])
        if len(seen) == 1:
            return CaseOutcome("error: RuntimeError: boom")
        if len(seen) == 2:
            return CaseOutcome("OOM")  # a result, not a failure
        return CaseOutcome("ok", [record(kwargs["case"], "macs", 1.0, "GMAC", {})])

    monkeypatch.setattr(measure, "run_isolated", fake)
    argv = ["--preset", "quick", "--backends", "full", "stdeform", "--k", "2", "--metrics",
            "flops", "fps", "--out", str(tmp_path)]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        measure.main(argv)
    assert exit_.value.code == 1
    assert len(seen) == 4  # every case ran
    statuses = {r["status"] for r in ResultsStore(tmp_path / "measurements.jsonl").records()}
    assert statuses == {"error: RuntimeError: boom", "OOM", "ok"}
    monkeypatch.setattr(measure, "run_isolated", lambda *a, **k: CaseOutcome("OOM"))
    assert measure.main([*argv, "--retry-errors"]) == {"skipped": 3, "OOM": 1}
