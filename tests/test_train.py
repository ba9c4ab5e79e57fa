"""Training harness: DDP equals one process, kill-and-resume reproduces the log, ablation table."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.ablate import main as ablate_main
from bench.convergence import default_target, reach
from bench.data.synthetic import generate_synthetic
from models.presets import get_preset

# a very small quick-preset model so that a few iterations take seconds
TINY = [
    "short_side=64",
    "max_size=64",
    "d_model=48",
    "n_heads=4",
    "enc_layers=1",
    "dec_layers=1",
    "dim_feedforward=64",
    "n_instances=3",
    "mask_dim=16",
    "focal_loss=true",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(out, videos=4, frames=6, size=(64, 64), seed=0, val_videos=2)
    return out


def train_command(data, out, run, iterations, eval_every, extra=()):
    return [
        "-m", "bench.train", "--name", run, "--out", str(out), "--data", str(data),
        "--iterations", str(iterations), "--eval-every", str(eval_every), "--batch-size", "2",
        "--threads", "1", "--set", *TINY, *extra,
    ]  # fmt: skip


def run_python(args, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          **kwargs)  # fmt: skip


def comparable(log):
    """A log without its wall-clock fields."""
    return [{k: v for k, v in line.items() if k not in ("wall_s", "device_hours")} for line in log]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_ddp_on_two_processes_equals_one_process_with_the_same_global_batch(tiny_data, tmp_path):
    iterations = 2
    ddp = run_python(
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *train_command(tiny_data, tmp_path / "ddp", "ddp", iterations, iterations,
                        ["--debug-params-dir", str(tmp_path / "p_ddp")])],
        timeout=600,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    single = run_python(
        train_command(tiny_data, tmp_path / "one", "one", iterations, iterations,
                      ["--debug-params-dir", str(tmp_path / "p_one")]),
        timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    lr = get_preset("quick").lr
    settled = None  # elements whose gradient was well above AdamW's eps (1e-8) at every step
    for step in range(1, iterations + 1):
        rank0, rank1, alone = (
            torch.load(tmp_path / run / f"rank{rank}_iter{step}.pt", weights_only=True)
            for run, rank in (("p_ddp", 0), ("p_ddp", 1), ("p_one", 0))
        )
        assert torch.equal(rank0["params"], rank1["params"]), f"ranks differ after step {step}"
        # the all-reduced gradient is the one-process gradient of the whole batch, up to the
        # order of float32 sums
        grads = alone["grads"]
        scale = grads.abs().max().item()
        assert scale > 0
        torch.testing.assert_close(rank0["grads"], grads, rtol=1e-4, atol=1e-5 * scale)
        # AdamW divides each gradient by its own running size, so where a gradient is ~eps that
        # summation-order noise can change the update's sign (an update is at most about lr);
        # everywhere else the steps agree
        big = grads.abs() > 1e-6
        settled = big if settled is None else settled & big
        params, expected = rank0["params"], alone["params"]
        assert settled.sum() > 0.1 * settled.numel()
        torch.testing.assert_close(params[settled], expected[settled], rtol=1e-4, atol=1e-5)
        assert (params - expected).abs().max() <= 2 * lr * step
    final = json.loads((tmp_path / "ddp" / "ddp" / "final.json").read_text())
    assert final["n_devices"] == 2


@pytest.mark.slow
def test_a_killed_run_resumes_and_writes_the_same_log(tiny_data, tmp_path):
    iterations, every = 6, 2
    whole = run_python(train_command(tiny_data, tmp_path, "whole", iterations, every),
                       timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]

    command = [sys.executable, *train_command(tiny_data, tmp_path, "killed", iterations, every)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # right after the first checkpoint landed
    process.wait()
    assert checkpoint.exists()
    assert not (tmp_path / "killed" / "final.json").exists(), "the run finished before the kill"
    resumed = run_python(train_command(tiny_data, tmp_path, "killed", iterations, every),
                         timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = read(tmp_path / "whole" / "log.jsonl")
    got = read(tmp_path / "killed" / "log.jsonl")
    assert [line["iteration"] for line in got] == [2, 4, 6]
    for a, b in zip(comparable(got), comparable(expected), strict=True):
        assert a.keys() == b.keys()
        assert (a["iteration"], a["epoch"], a["lr"]) == (b["iteration"], b["epoch"], b["lr"])
        assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-6)
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)


@pytest.mark.slow
def test_ablation_with_a_tiny_budget_gives_a_complete_table(tiny_data, tmp_path):
    args = ["--k", "2", "4", "--data", str(tiny_data), "--iterations", "2", "--eval-every", "2",
            "--pretrain-iterations", "2", "--threads", "1", "--out", str(tmp_path),
            "--set", *TINY]  # fmt: skip
    table = ablate_main(args)
    assert list(table["run"]) == ["full-sdpa-seed0", "stdeform-3d-k2-seed0", "stdeform-3d-k4-seed0"]
    assert list(table["status"]) == ["ok", "ok", "ok"]
    assert table["AP"].notna().all() and table["AP50"].notna().all()
    assert table.attrs["target_AP"] == pytest.approx(default_target(list(table["AP"])))
    records = [json.loads(line) for line in (tmp_path / "ablation.jsonl").read_text().splitlines()]
    metrics = {(r["case"]["run"], r["metric"]) for r in records}
    for run in table["run"]:
        for metric in ("AP", "AP50", "AP75", "AR1", "AR10", "device_hours_to_target",
                       "epochs_to_target", "peak_memory"):  # fmt: skip
            assert (run, metric) in metrics
    assert (tmp_path / "ablation.csv").exists() and (tmp_path / "ablation.md").exists()
    trained_in = {r["case"]["run"]: r["env"] for r in records}
    for run in table["run"]:
        final = json.loads((tmp_path / "runs" / run / "final.json").read_text())
        assert trained_in[run] == final["environment"]
        assert final["environment"]["threads"] == 1  # the training process's, not this one's
    # rerunning skips the finished runs, and their records keep the environment they were
    # trained in (here: a run that pretends to come from another commit)
    path = tmp_path / "runs" / "stdeform-3d-k2-seed0" / "final.json"
    final = json.loads(path.read_text())
    final["environment"]["commit"] = "0123456789ab"
    path.write_text(json.dumps(final))
    again = ablate_main(args)
    assert list(again["run"]) == list(table["run"])
    lines = (tmp_path / "ablation.jsonl").read_text().splitlines()
    rerun = [json.loads(line) for line in lines[len(records) :]]
    commits = {r["case"]["run"]: r["env"]["commit"] for r in rerun}
    assert commits["stdeform-3d-k2-seed0"] == "0123456789ab"
    assert commits["full-sdpa-seed0"] == trained_in["full-sdpa-seed0"]["commit"]


def test_reach_and_default_target():
    log = [
        {"iteration": 10, "epoch": 0.5, "wall_s": 60.0, "device_hours": 1 / 60, "metrics": {"AP": 0.1}},
        {"iteration": 20, "epoch": 1.0, "wall_s": 120.0, "device_hours": 2 / 60, "metrics": {"AP": 0.3}},
    ]  # fmt: skip
    assert reach(log, 0.25) == {"iteration": 20, "epoch": 1.0, "wall_s": 120.0,
                                "device_hours": 2 / 60}  # fmt: skip
    assert reach(log, 0.5) is None
    assert default_target([0.3, None, 0.2]) == pytest.approx(0.27)
    assert default_target([None]) is None
