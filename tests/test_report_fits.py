"""Honest fits on constructed points: the memory quadratic recovers known coefficients, the noise
rule flags what it should, the crossover interpolates on log-log axes, and the uncounted
operators fold into an estimated share."""

import math

import numpy as np
import pandas as pd
import pytest

from bench.measure.fit import loglog_fit, quadratic_fit
from bench.report.crossover import ALWAYS, NEVER, NOT_AT_LARGEST, crossover, interpolate
from bench.report.noise import changed, fit_problems, point_noisy
from bench.report.uncounted import share
from bench.store import ResultsStore, record
from tests.test_report import markdown_tables, render, row_of

ENV = {"device": "cpu", "device_name": "Test CPU", "device_count": 1, "threads": 1,
       "torch": "2.x", "cuda": None, "python": "3.x", "host": "h", "commit": "c",
       "date": "2026-01-01T00:00:00+00:00"}  # fmt: skip
POINTS = [("T", T, 10, 17) for T in (4, 8, 16, 32, 64)]
POINTS += [("HW", 8, H, W) for H, W in ((5, 9), (10, 17), (15, 26), (20, 34), (30, 51))]
LAYER = {"d_model": 64, "n_heads": 4, "dim_feedforward": 128}


def test_the_quadratic_fit_recovers_known_coefficients():
    S = np.array([360, 680, 1360, 2720, 3120, 5440, 10880, 12240], dtype=float)
    a, b, c = 2.5e6, 36_864.0, 64.0  # bytes, bytes per token, bytes per token²
    fit = quadratic_fit(S, a + b * S + c * S * S)
    assert (fit.constant, fit.linear, fit.quadratic) == pytest.approx((a, b, c), rel=1e-6)
    assert fit.r2 == pytest.approx(1.0) and fit.points == 8
    rng = np.random.default_rng(0)
    noisy = quadratic_fit(S, (a + b * S + c * S * S) * (1 + rng.normal(0, 0.01, S.size)))
    assert noisy.quadratic == pytest.approx(c, rel=0.05) and noisy.r2 > 0.99
    with pytest.raises(ValueError, match="at least 3 distinct points"):
        quadratic_fit([1, 2, 2], [1, 2, 3])


def test_the_log_log_fit_states_its_r2():
    x = np.array([10, 20, 40, 80, 160], dtype=float)
    exact = loglog_fit(x, 3e-6 * x**1.7)
    assert exact.slope == pytest.approx(1.7) and exact.r2 == pytest.approx(1.0)
    bent = loglog_fit(x, np.array([1, 5, 2, 8, 3], dtype=float))
    assert bent.r2 < 0.95


def test_the_noise_rule():
    assert fit_problems(0.99, [0.02, 0.03], 5) == []
    assert fit_problems(0.90, [0.02], 5) == ["R² 0.90"]
    assert fit_problems(0.99, [0.02, 0.40], 5) == ["spread 0.40"]
    assert fit_problems(1.0, [0.01], 2) == ["2 points"]
    assert point_noisy(0.26) and not point_noisy(0.25) and not point_noisy(None)
    # a change counts only beyond both spreads and 5%
    assert not changed(1.0, 1.04, 0.0, 0.0)
    assert changed(1.0, 1.06, 0.0, 0.0)
    assert not changed(1.0, 1.2, 0.15, 0.05)  # |log 1.2| = 0.18 < 0.20
    assert changed(1.0, 0.5, 0.15, 0.05)


def write_scaling(folder, methods: dict) -> None:
    """Scaling records of the paper's sweep grid: methods {label: (backend, options, seconds(T,
    H, W), mib(S), spread(T, H, W))}."""
    store = ResultsStore(folder / "measurements.jsonl")
    for backend, options, seconds, mib, spread in methods.values():
        for sweep, T, H, W in POINTS:
            case = {"kind": "scaling", "preset": None, "backend": backend, "options": options,
                    "sweep": sweep, "T": T, "H": H, "W": W, "tokens": T * H * W, **LAYER,
                    "device": "cpu", "threads": 1}  # fmt: skip
            time = seconds(T, H, W)
            store.append(
                record(case, "time", time, "s", ENV, median_s=time,
                       iqr_s=spread(T, H, W) * time, repeats=5),
                record(case, "peak_memory", mib(T * H * W), "MiB", ENV, method="peak_rss"),
            )  # fmt: skip


def test_noisy_fits_and_points_are_marked_not_printed_clean(tmp_path):
    quiet = lambda T, H, W: 0.02
    write_scaling(
        tmp_path,
        {
            "clean": ("full", {"impl": "sdpa"}, lambda T, H, W: 1e-9 * (T * H * W) ** 2,
                      lambda S: 1 + S / 1000, quiet),
            "noisy point": ("full", {"impl": "math"}, lambda T, H, W: 1e-9 * (T * H * W) ** 2,
                            lambda S: 1 + S / 1000,
                            lambda T, H, W: 0.6 if T * H * W == 12240 else 0.02),
        },
    )  # fmt: skip
    tables = markdown_tables(render(tmp_path, tmp_path / "out")["md"])
    rows = tables["Scaling: time against tokens"]
    clean, noisy = row_of(rows, "full (sdpa)"), row_of(rows, "full (math)")
    assert clean["upper half [time ∝ tokens^b]"] == "2.00"
    assert clean["R² [upper half]"] == "1.000"
    assert noisy["upper half [time ∝ tokens^b]"] == "2.00 ⚠"  # R² 1, but a point's spread 0.6
    assert noisy["spread [upper half]"] == "0.60 ⚠"
    assert noisy["T sweep [time ∝ tokens^b]"] == "2.00"  # the noisy point is in the H×W sweep
    points = tables["Scaling: the measured points"]
    marked = [row for row in points if "⚠" in row["time (ms) (spread)"]]
    assert [(row["method"], row["tokens"]) for row in marked] == [("full (math)", "12240")]


def test_the_memory_table_reads_bytes_per_token_and_per_token_squared(tmp_path):
    b, c = 40_000.0, 32.0  # bytes per token, bytes per token²: one fp32 S×S matrix of 8 heads
    write_scaling(
        tmp_path,
        {"m": ("full", {"impl": "math"}, lambda T, H, W: 1e-6 * T * H * W,
               lambda S: (2**21 + b * S + c * S * S) / 2**20, lambda T, H, W: 0.01)},
    )  # fmt: skip
    rows = markdown_tables(render(tmp_path, tmp_path / "out")["md"])[
        "Scaling: memory against tokens"
    ]
    row = row_of(rows, "full (math)")
    assert float(row["a (MiB) [peak ≈ a + b·S + c·S²]"]) == pytest.approx(2.0, rel=1e-3)
    assert float(row["b (B/token) [peak ≈ a + b·S + c·S²]"]) == pytest.approx(b, rel=1e-3)
    assert float(row["c (B/token²) [peak ≈ a + b·S + c·S²]"]) == pytest.approx(c, rel=1e-3)
    assert row["S×S fp32 matrices (c / 4·heads)"] == "2.00"  # 32 B / (4 B x 4 heads)
    assert row["R²"] == "1.000" and row["points"] == "10"


def test_the_crossover_interpolates_on_log_log_axes():
    tokens = [100, 1000, 10_000]
    reference = [1.0, 10.0, 100.0]
    # slower by 2x at 1000, faster by 2x at 10000: d goes log 2 -> -log 2, crossing half-way
    found = crossover(tokens, [0.5, 20.0, 50.0], reference)
    assert found.kind == "above"
    assert found.tokens == pytest.approx(math.sqrt(1000 * 10_000))
    # uneven: slower by 4x, then faster by 2x: a third of the way in log tokens
    found = crossover(tokens, [4.0, 40.0, 50.0], reference)
    assert math.log(found.tokens) == pytest.approx(math.log(1000) + math.log(10) * 2 / 3)
    assert crossover(tokens, [0.5, 5.0, 50.0], reference).kind == ALWAYS
    assert crossover(tokens, [2.0, 20.0, 200.0], reference).kind == NEVER
    assert crossover(tokens, [2.0, 5.0, 200.0], reference).kind == NOT_AT_LARGEST
    assert crossover([], [], []) is None


def test_interpolation_at_the_paper_shape():
    assert interpolate([4, 8, 16], [1.0, 2.0, 4.0], 8) == 2.0  # a measured point: exactly it
    assert interpolate([32, 64], [1.0, 4.0], 36) == pytest.approx((36 / 32) ** 2)  # power 2
    assert interpolate([4, 8], [1.0, 2.0], 36) is None  # outside the measured range


def test_the_crossover_table_on_constructed_sweeps(tmp_path):
    dense = lambda T, H, W: 1e-3 + 1e-8 * (T * H * W) ** 2
    linear = lambda T, H, W: 2e-5 * T * H * W
    write_scaling(
        tmp_path,
        {"dense": ("full", {"impl": "sdpa"}, dense, lambda S: 1.0, lambda T, H, W: 0.01),
         "cheap": ("stdeform", {"mode": "3d", "n_points": 4, "window": None, "impl": "op"},
                   linear, lambda S: 1.0, lambda T, H, W: 0.01)},
    )  # fmt: skip
    rows = markdown_tables(render(tmp_path, tmp_path / "out")["md"])[
        "Where each mechanism beats dense attention (SDPA)"
    ]
    row = row_of(rows, "stdeform 3d K=4")
    # T sweep at 10x17 (170 tokens per frame): dense/linear cross where 1e-3 + 1e-8 S² = 2e-5 S
    tokens = np.array([170 * T for T in (4, 8, 16, 32, 64)], dtype=float)
    d = np.log(2e-5 * tokens) - np.log(1e-3 + 1e-8 * tokens**2)
    i = np.nonzero(d >= 0)[0][-1]
    expected = math.exp(
        math.log(tokens[i]) + d[i] / (d[i] - d[i + 1]) * math.log(tokens[i + 1] / tokens[i])
    )
    cell = row["T sweep [faster than SDPA above (tokens)]"]
    assert float(cell) == pytest.approx(expected, abs=0.6)
    at = "[at the paper shape 36×10×17 = 6120 tokens]"
    achieved = dense(36, 10, 17) / linear(36, 10, 17)
    assert float(row[f"achieved speedup {at}"].lstrip("×")) == pytest.approx(achieved, rel=0.02)
    assert row["paper point"] == "interpolated in T at 10×17"
    ratio = float(row[f"achieved / MAC-bound {at}"])
    bound = float(row[f"MAC-bound speedup {at}"].lstrip("×"))
    assert ratio == pytest.approx(achieved / bound, rel=0.02)


def test_uncounted_operators_are_estimated_per_call_or_from_recorded_elements():
    inputs = {"T": 2, "height": 10, "width": 10}  # a clip of 600 elements
    calls = pd.Series({"value": 1e-6, "unsupported": {"aten::sigmoid": 3, "aten::exp": 2},
                       "input": inputs})  # fmt: skip
    fraction, how = share(calls)
    assert fraction == pytest.approx(5 * 600 / 1e3) and how == "calls × clip elements"
    elements = pd.Series({"value": 1e-6, "unsupported": {"aten::sigmoid": 3},
                          "unsupported_elements": {"aten::sigmoid": 250}, "input": inputs})  # fmt: skip
    fraction, how = share(elements)
    assert fraction == pytest.approx(0.25) and how == "output elements recorded"
    unknown = pd.Series({"value": 1.0, "unsupported": {"aten::sigmoid": 3}, "input": {}})
    assert share(unknown) == (None, "input size not recorded")
