"""Training: determinism, kill-and-resume, DDP equals one process, runs that refuse to be mixed,
finished runs that stay finished, and the ablation's table."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from bench.ablate import main as ablate_main
from bench.convergence import default_target, plateaued, reach
from bench.data.synthetic import generate_synthetic
from bench.runfiles import RunFiles, RunMismatch
from bench.train import TrainConfig, train
from models import get_preset
from tests.tiny import TINY, set_args

TRAIN_TINY = {**TINY, "focal_loss": True}  # focal: the criterion's all-reduced normaliser under DDP


def train_args(data, out, run, iterations, eval_every, extra=()):
    return [
        "--name", run, "--out", str(out), "--data", str(data), "--iterations", str(iterations),
        "--eval-every", str(eval_every), "--batch-size", "2", "--threads", "1",
        "--set", *set_args(TRAIN_TINY), *extra,
    ]  # fmt: skip


def config(data, out, run, **fields):
    settings = dict(iterations=4, eval_every=2, batch_size=2, threads=1, overrides=TRAIN_TINY)
    return TrainConfig(run=run, out=str(out), data=str(data), **{**settings, **fields})


def run_python(args, env=None, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          **kwargs)  # fmt: skip


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_clock(log):
    """A log without its wall-clock fields."""
    clock = ("wall_s", "device_hours", "eval_s")
    return [{k: v for k, v in line.items() if k not in clock} for line in log]


def weights(directory):
    return torch.load(directory / "checkpoint.pt", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
def test_the_same_run_twice_gives_bitwise_equal_losses_and_parameters(tiny_data, tmp_path):
    first = train(config(tiny_data, tmp_path, "first"))
    second = train(config(tiny_data, tmp_path, "second"))
    assert first["iterations"] == second["iterations"] == 4
    a, b = read(tmp_path / "first" / "log.jsonl"), read(tmp_path / "second" / "log.jsonl")
    assert [{**line, "run": None} for line in without_clock(a)] == [
        {**line, "run": None} for line in without_clock(b)
    ]
    assert_same_weights(weights(tmp_path / "first"), weights(tmp_path / "second"))


@pytest.mark.slow
def test_the_schedule_does_not_read_the_clock(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path, "fast", iterations=3, eval_every=3, lr_drop=0.5))

    def slow(iteration, model, rank):
        time.sleep(0.4)  # a loaded machine

    # the same run, slowed down, under a budget it nearly exhausts: a wall-clock schedule would
    # drop the learning rate (or evaluate) at other iterations
    slowed = config(tiny_data, tmp_path, "slow", iterations=3, eval_every=3, lr_drop=0.5,
                    budget_minutes=0.5)  # fmt: skip
    train(slowed, callbacks=(slow,))
    fast, late = read(tmp_path / "fast" / "log.jsonl"), read(tmp_path / "slow" / "log.jsonl")
    assert [line["iteration"] for line in late] == [line["iteration"] for line in fast] == [3]
    assert late[0]["lr"] == fast[0]["lr"]
    assert late[0]["losses"] == fast[0]["losses"]
    assert_same_weights(weights(tmp_path / "fast"), weights(tmp_path / "slow"))


@pytest.mark.slow
def test_a_killed_run_resumes_and_writes_the_same_log_and_weights(tiny_data, tmp_path):
    iterations, every = 6, 2
    whole = run_python(["-m", "bench.train", *train_args(tiny_data, tmp_path, "whole",
                                                          iterations, every)], timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]

    command = [sys.executable, "-m", "bench.train",
               *train_args(tiny_data, tmp_path, "killed", iterations, every)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # right after the first checkpoint landed
    process.wait()
    assert checkpoint.exists()
    assert not (tmp_path / "killed" / "final.json").exists(), "the run finished before the kill"
    resumed = run_python(["-m", "bench.train", *train_args(tiny_data, tmp_path, "killed",
                                                            iterations, every)], timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = without_clock(read(tmp_path / "whole" / "log.jsonl"))
    got = without_clock(read(tmp_path / "killed" / "log.jsonl"))
    assert [line["iteration"] for line in got] == [2, 4, 6]
    assert [{**line, "run": None} for line in got] == [{**line, "run": None} for line in expected]
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "killed"))


@pytest.mark.slow
def test_ddp_on_two_processes_equals_one_process_with_the_same_global_batch(tiny_data, tmp_path):
    iterations = 2
    script = os.path.join(os.path.dirname(__file__), "scripts", "train_with_param_dump.py")
    env = {"PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    ddp = run_python(
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script,
         str(tmp_path / "p_ddp"), "--",
         *train_args(tiny_data, tmp_path / "ddp", "ddp", iterations, iterations)],
        timeout=600, env=env,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    single = run_python(
        [script, str(tmp_path / "p_one"), "--",
         *train_args(tiny_data, tmp_path / "one", "one", iterations, iterations)],
        timeout=600, env=env,
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
        assert settled.sum() > 100_000  # the tight comparison covers many elements
        torch.testing.assert_close(params[settled], expected[settled], rtol=1e-4, atol=1e-5)
        assert (params - expected).abs().max() <= 2 * lr * step
    final = json.loads((tmp_path / "ddp" / "ddp" / "final.json").read_text())
    assert final["n_devices"] == 2


@pytest.mark.slow
def test_a_finished_run_is_never_trained_again(tiny_data, tmp_path):
    cut = config(tiny_data, tmp_path, "cut", iterations=50, eval_every=1, budget_minutes=0.002)
    first = train(cut)
    assert first["status"] == "budget" and first["iterations"] < 50
    final = (tmp_path / "cut" / "final.json").read_text()
    log = (tmp_path / "cut" / "log.jsonl").read_text()
    again = train(cut)
    assert again == first
    assert (tmp_path / "cut" / "final.json").read_text() == final
    assert (tmp_path / "cut" / "log.jsonl").read_text() == log


def test_resuming_with_other_settings_is_refused_before_any_file_changes(tiny_data, tmp_path):
    files = RunFiles(tmp_path / "run")
    original = config(tiny_data, tmp_path, "run")
    files.claim({"seed": 0}, original.identity())
    recorded = files.config.read_text()
    other = config(tiny_data, tmp_path, "run", seed=5, iterations=8)
    with pytest.raises(RunMismatch) as error:
        train(other)
    message = str(error.value)
    assert "seed: recorded 0, now 5" in message and "iterations: recorded 4, now 8" in message
    assert "\n" not in message
    assert files.config.read_text() == recorded
    assert sorted(p.name for p in files.directory.iterdir()) == ["config.json"]
    # settings that do not change what a run computes may differ
    files.claim({}, config(tiny_data, tmp_path, "run", threads=2, budget_minutes=9).identity())


def test_resume_drops_a_torn_last_line(tmp_path):
    files = RunFiles(tmp_path)
    lines = [{"iteration": 2, "metrics": {"AP": 0.1}}, {"iteration": 4, "metrics": {"AP": 0.2}}]
    files.log.write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[1]) + "\n" + '{"iterat')
    with pytest.raises(ValueError, match="log.jsonl:3"):
        files.read_log()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files.resume({"iteration": 4, "log_line": lines[1]})
    assert any("unterminated last line" in str(w.message) for w in caught)
    assert files.read_log() == lines
    # a kill between the checkpoint and its log line: the line comes back from the checkpoint
    files.log.write_text(json.dumps(lines[0]) + "\n")
    files.resume({"iteration": 4, "log_line": lines[1]})
    assert files.read_log() == lines


class Planted:
    """Unpickling this runs code: a checkpoint must never be loaded that way."""

    def __reduce__(self):
        return (os.system, ("touch planted-code-ran",))


def test_a_planted_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = RunFiles(tmp_path)
    with open(files.checkpoint, "wb") as f:
        pickle.dump({"model": Planted()}, f)  # what torch.load's pickle would execute
    with pytest.raises(pickle.UnpicklingError):
        files.load_checkpoint("cpu")
    assert not (tmp_path / "planted-code-ran").exists()


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--batch-size", "0"], ["--batch-size", "'0'"]),
        (["--eval-every", "0"], ["--eval-every"]),
        (["--val-videos", "0"], ["--val-videos"]),
        (["--val-videos", "-1"], ["--val-videos"]),
        (["--set", "n_points=0"], ["n_points", "backend option"]),
        (["--set", "n_points=-3"], ["n_points", "backend option"]),
        (["--set", "n_points=abc"], ["n_points", "backend option"]),
        (["--backend", "stdeform:n_points=-3"], ["n_points", ">= 1", "-3"]),
        (["--backend", "stdeform:n_points=abc"], ["n_points", "'abc'"]),
        (["--decoder", "stdeform:mode=4d"], ["mode", "3d | frames | frame"]),
        (["--set", "d_modle=4"], ["d_modle"]),
    ],
)
def test_bad_options_are_one_line_errors_before_any_work(tmp_path, extra, names):
    result = run_python(["-m", "bench.train", "--name", "x", "--out", str(tmp_path), *extra])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0]
    assert not (tmp_path / "x" / "config.json").exists()


@pytest.mark.slow
def test_ablation_with_a_tiny_budget_gives_a_complete_table(tiny_data, tmp_path):
    args = ["--k", "2", "4", "--data", str(tiny_data), "--iterations", "2", "--eval-every", "2",
            "--pretrain-iterations", "2", "--threads", "1", "--out", str(tmp_path),
            "--seeds", "0", "1", "--hybrids", "full/stdeform:mode=frames,n_points=2",
            "--set", *set_args(TRAIN_TINY)]  # fmt: skip
    table, diffs = ablate_main(args)
    assert list(table["configuration"]) == [
        "full (sdpa)", "stdeform frames K=2", "stdeform frames K=4",
        "full (sdpa) enc + stdeform frames K=2 dec",
    ]  # fmt: skip
    assert list(table["runs ok / planned"]) == ["2 / 2"] * 4
    assert table["AP (%)"].str.contains(r"± .* \(n=2\)").all()
    assert "stdeform frames K=4 − stdeform frames K=2" in list(diffs["comparison"])
    assert "stdeform frames K=2 − full (sdpa)" in list(diffs["comparison"])
    records = [json.loads(line) for line in (tmp_path / "ablation.jsonl").read_text().splitlines()]
    runs = {r["case"]["run"] for r in records}
    assert len(runs) == 8
    for run in runs:
        metrics = {r["metric"] for r in records if r["case"]["run"] == run}
        assert {"AP", "AP50", "iterations_to_target", "evaluations_to_target", "iterations",
                "peak_memory"} <= metrics  # fmt: skip
    hybrid = next(r for r in records if r["case"]["decoder"])
    assert hybrid["case"]["backend"] == "full"
    assert hybrid["case"]["decoder"]["backend"] == "stdeform"
    for record in records:
        final = json.loads((tmp_path / "runs" / record["case"]["run"] / "final.json").read_text())
        assert record["env"] == final["environment"]  # where the run was trained
        quick = get_preset("quick")  # each backend's own rate (bench.study lr)
        assert record["case"]["lr"] == quick.lr_by_backend.get(record["case"]["backend"], quick.lr)
    assert (tmp_path / "ablation.csv").exists() and (tmp_path / "ablation.md").exists()
    # rerunning skips the finished runs and gives the same table
    again, _ = ablate_main(args)
    assert again.equals(table)


def test_ablate_exits_non_zero_when_a_run_fails_and_still_finishes_the_sweep(tmp_path):
    data = tmp_path / "data"
    generate_synthetic(data, videos=2, frames=6, size=(64, 64), seed=0, val_videos=1)
    for image in (data / "train" / "JPEGImages").rglob("*.jpg"):
        image.write_bytes(b"not a jpeg")  # every training clip fails to load
    result = run_python(
        ["-m", "bench.ablate", "--k", "2", "--data", str(data), "--iterations", "1",
         "--eval-every", "1", "--pretrain-iterations", "0", "--seeds", "0", "--threads", "1",
         "--out", str(tmp_path / "out"), "--set", *set_args(TRAIN_TINY)],
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "failed: full-sdpa-seed0" in result.stderr
    assert "failed: stdeform-frames-k2-seed0" in result.stderr  # the sweep went on
    assert (tmp_path / "out" / "ablation.md").exists()


@pytest.mark.parametrize("extra", [["--k", "0"], ["--k", "-3"], ["--seeds", "-1"],
                                   ["--backends", "stdeform:n_points=x"], ["--hybrids", "full"]])  # fmt: skip
def test_ablate_rejects_bad_options_at_parse_time(tmp_path, extra):
    result = run_python(["-m", "bench.ablate", "--out", str(tmp_path / "o"), *extra])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_reach_targets_and_the_plateau_rule():
    log = [
        {"iteration": 10, "epoch": 0.5, "wall_s": 60.0, "device_hours": 1 / 60, "metrics": {"AP": 0.1}},
        {"iteration": 20, "epoch": 1.0, "wall_s": 120.0, "device_hours": 2 / 60, "metrics": {"AP": 0.3}},
    ]  # fmt: skip
    assert reach(log, 0.25) == {"iteration": 20, "epoch": 1.0, "wall_s": 120.0,
                                "device_hours": 2 / 60, "evaluations": 2}  # fmt: skip
    assert reach(log, 0.5) is None
    assert default_target([0.3, None, 0.2]) == pytest.approx(0.27)
    assert default_target([None]) is None
    assert default_target([0.0, 0.0]) is None  # every run at AP 0: no target, not "reached"
    assert default_target([0.04]) is None  # 0.036 is below the floor

    def curve(aps):
        return [{"iteration": 100 * (i + 1), "metrics": {"AP": ap}} for i, ap in enumerate(aps)]

    assert plateaued(curve([0.1, 0.2, 0.3, 0.35, 0.352]))  # +0.2 points over the last 20%
    assert not plateaued(curve([0.1, 0.2, 0.3, 0.35, 0.40]))  # +5 points
    assert not plateaued(curve([0.1]))  # no point before the last 20%


def test_initial_weights_identify_a_run_by_their_content_not_their_path(tmp_path):
    weights = {name: tmp_path / name for name in ("a.pt", "b.pt", "c.pt")}
    weights["a.pt"].write_bytes(b"the same weights")
    weights["b.pt"].write_bytes(b"the same weights")
    weights["c.pt"].write_bytes(b"other weights")

    def identity(path):
        return TrainConfig(run="r", overrides={"backbone_weights": str(path)}).identity()

    assert identity(weights["a.pt"]) == identity(weights["b.pt"])
    assert identity(weights["a.pt"]) != identity(weights["c.pt"])
