"""bench.infer: a trained run's predictions, scored by bench.evaluation, give the run's own AP."""

import json
import subprocess
import sys

import pytest

from bench.train import TrainConfig, train
from tests.tiny import TINY


@pytest.mark.slow
def test_infer_writes_the_results_the_run_was_scored_on(tiny_data, tmp_path):
    config = TrainConfig(run="r", out=str(tmp_path), data=str(tiny_data), iterations=2,
                         eval_every=2, batch_size=2, threads=1, overrides=TINY)  # fmt: skip
    summary = train(config)
    results = tmp_path / "results.json"
    infer = subprocess.run(
        [sys.executable, "-m", "bench.infer", "--run", str(tmp_path / "r"), "--out", str(results),
         "--threads", "1"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert infer.returncode == 0, infer.stderr[-2000:]
    assert isinstance(json.loads(results.read_text()), list)
    metrics = tmp_path / "metrics.json"
    gt = tiny_data / "annotations" / "instances_val.json"
    evaluation = subprocess.run(
        [sys.executable, "-m", "bench.evaluation", "--gt", str(gt), "--results", str(results),
         "--json", str(metrics)], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    scored = json.loads(metrics.read_text())
    for name, value in summary["metrics"].items():
        assert scored[name] == pytest.approx(value, abs=1e-9), name


def test_infer_names_a_folder_that_is_not_a_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.infer", "--run", str(tmp_path), "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a run folder" in result.stderr and "Traceback" not in result.stderr
