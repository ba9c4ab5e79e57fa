"""The studies' decisions on constructed logs: the learning rate chosen, the target, the ratio."""

import argparse

import pytest

from bench import ablate
from bench.method import plan_settings
from bench.study import choose_lr, plateau_table, ratios, study_target
from models import get_preset


def planned_runs(specs, lrs, seeds):
    settings = plan_settings(get_preset("quick"), specs)
    args = argparse.Namespace(seeds=seeds, preset="quick", overrides={}, out="unused",
                              data="synthetic", iterations=100, eval_every=50, lr_drop=2 / 3,
                              budget_minutes=None, device="cpu", threads=1, val_videos=None)  # fmt: skip
    return ablate.plan_runs(settings, args, lrs=lrs, kind="x")


def curve(aps, step=50):
    return [{"iteration": step * (i + 1), "epoch": 0.0, "wall_s": 1.0, "device_hours": 0.1,
             "metrics": {"AP": ap}} for i, ap in enumerate(aps)]  # fmt: skip


def outcome_of(runs, finals_ap, target=None, logs=None, target_rule=None):
    logs = logs or {p.config.run: curve([finals_ap[p.config.run]]) for p in runs}
    finals = {p.config.run: {"status": "ok", "metrics": {"AP": finals_ap[p.config.run]}}
              for p in runs}  # fmt: skip
    outcome = ablate.Outcome(runs, logs, finals, target, {})
    if target is None and target_rule is not None:
        means = [sum(outcome.final_aps(g).values()) / len(g) for g in outcome.groups().values()]
        outcome.target = target_rule(means)
    from bench.convergence import reach

    outcome.reached = {p.config.run: reach(logs[p.config.run], outcome.target)
                       if outcome.target is not None else None for p in runs}  # fmt: skip
    return outcome


def test_the_sweep_chooses_the_rate_with_the_best_mean_ap_over_seeds():
    runs = planned_runs(["full", "stdeform:n_points=4"], [1e-4, 3e-4, 9e-4], [0, 1])
    ap = {}
    for p in runs:
        if p.setting.encoder.name == "full":  # best on average at 1e-4, though seed 1 prefers 3e-4
            ap[p.config.run] = {1e-4: (0.30, 0.20), 3e-4: (0.10, 0.30), 9e-4: (0.05, 0.05)}[p.lr][
                p.config.seed
            ]
        else:  # a clear optimum at 9e-4
            ap[p.config.run] = {1e-4: 0.2, 3e-4: 0.3, 9e-4: 0.4}[p.lr] + 0.01 * p.config.seed
    chosen = choose_lr(outcome_of(runs, ap))
    assert chosen == {"full (sdpa)": 1e-4, "stdeform 3d K=4": 9e-4}


def test_the_study_target_is_reachable_by_every_configuration():
    assert study_target([0.40, 0.20]) == pytest.approx(0.18)
    assert study_target([None, 0.0]) is None


def test_the_ratio_of_iterations_to_target_with_a_censored_run():
    runs = planned_runs(["full", "stdeform:n_points=4"], [1e-4], [0, 1, 2])
    logs = {}
    for p in runs:
        if p.setting.encoder.name == "stdeform":  # reaches 0.2 at iteration 100 in every seed
            logs[p.config.run] = curve([0.1, 0.25, 0.3, 0.3])
        elif p.config.seed < 2:  # dense: reaches it at iteration 800
            logs[p.config.run] = curve([0.05] * 15 + [0.21, 0.22])
        else:  # seed 2: never
            logs[p.config.run] = curve([0.05] * 17)
    finals = {run: log[-1]["metrics"]["AP"] for run, log in logs.items()}
    outcome = outcome_of(runs, finals, target=0.2, logs=logs)
    table = ratios(outcome)
    assert list(table["seeds with both reaching"]) == ["2 of 3"]
    assert table["iterations to target, dense / other"].iloc[0].startswith("8.00")
    assert table["verdict"].iloc[0] == "censored: lower bound"
    plateau = plateau_table(outcome)
    assert list(plateau["flattened (< 0.5 points)"]) == ["1 of 3", "3 of 3"]


def test_an_optimum_at_the_edge_of_the_grid_extends_it():
    from bench.study import MAX_RATES, widened

    grid = {"a": [1.0, 3.0, 9.0], "b": [1.0, 3.0, 9.0], "c": [1.0, 3.0, 9.0]}
    assert widened(grid, {"a": 9.0, "b": 3.0, "c": 1.0})
    assert grid == {"a": [1.0, 3.0, 9.0, 27.0], "b": [1.0, 3.0, 9.0], "c": [1 / 3, 1.0, 3.0, 9.0]}
    assert not widened(grid, {"a": 9.0, "b": 3.0, "c": 1.0})  # interior choices: done
    grid = {"a": [3.0**i for i in range(MAX_RATES)]}
    assert not widened(grid, {"a": 3.0 ** (MAX_RATES - 1)})  # at most MAX_RATES rates


def finish_constructed(planned, aps):
    """Give a planned run the files of a finished one (constructed, not trained)."""
    import dataclasses

    from bench.runfiles import RunFiles

    files = RunFiles(planned.config.run_dir)
    files.directory.mkdir(parents=True)
    files.claim(dataclasses.asdict(planned.config), planned.config.identity())
    for line in curve(aps):
        files.save({"step": 0}, {**line, "run": planned.config.run})
    files.checkpoint.unlink()
    files.finish({"run": planned.config.run, "status": "ok", "metrics": {"AP": aps[-1]}})
    return files


def test_a_run_with_a_finished_twin_takes_its_results_instead_of_training(tmp_path, monkeypatch):
    """The lr sweep's run at 2e-4 x 3 is the ablation's run at the preset's 6e-4 (same seed):
    the ablation takes its log and summary under its own name; another seed still trains."""
    from bench.runfiles import RunFiles

    settings = plan_settings(get_preset("quick"), ["full"])
    args = argparse.Namespace(seeds=[0, 1], preset="quick", overrides={}, out=str(tmp_path),
                              data="synthetic", iterations=100, eval_every=50, lr_drop=2 / 3,
                              budget_minutes=None, device="cpu", threads=1, val_videos=None)  # fmt: skip
    sweep = ablate.plan_runs(settings, args, lrs=[2e-4 * 3], kind="lr")
    args.overrides = {"lr": 6e-4}
    ablation = ablate.plan_runs(settings, args)
    assert sweep[0].lr != ablation[0].lr  # 0.0006000000000000001 against 0.0006
    twin = finish_constructed(sweep[0], [0.1, 0.25])
    trained = []

    def isolated(target, payload, timeout, stream):
        trained.append(payload["config"]["run"])
        return argparse.Namespace(status="ok", message="")

    monkeypatch.setattr(ablate, "run_isolated", isolated)
    statuses = ablate.train_runs(ablation)
    assert statuses == {"full-sdpa-seed0": "ok", "full-sdpa-seed1": "ok"}
    assert trained == ["full-sdpa-seed1"]  # seed 1 has no twin
    reused = RunFiles(ablation[0].config.run_dir)
    assert reused.finished() == {**twin.finished(), "run": "full-sdpa-seed0",
                                 "reused_from": twin.directory.name}  # fmt: skip
    lines = reused.read_log()
    assert [line["run"] for line in lines] == ["full-sdpa-seed0"] * 2
    assert [line["metrics"] for line in lines] == [line["metrics"] for line in twin.read_log()]
    assert ablate.collect(ablation[:1], 0.2).reached["full-sdpa-seed0"]["iteration"] == 100
