"""Intervals over seeds against scipy.stats, paired differences and ratios on constructed cases."""

import math

import numpy as np
import pytest
from scipy import stats

from bench.stats import (
    NOT_DISTINGUISHABLE,
    Censored,
    mean_interval,
    paired_difference,
    ratio_interval,
    verdict,
)


def test_mean_interval_matches_scipy_student_t():
    values = [0.41, 0.374, 0.389, 0.402]
    got = mean_interval(values)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert got.value == pytest.approx(np.mean(values))
    assert (got.low, got.high) == pytest.approx((low, high))
    assert got.n == 4
    # by hand: t_{0.975, 3} = 3.182446
    sd = np.std(values, ddof=1)
    assert got.half_width == pytest.approx(3.182446 * sd / 2, rel=1e-5)


def test_one_value_has_no_interval_and_none_is_dropped():
    assert mean_interval([0.3, None, float("nan")]).low is None
    assert mean_interval([]) is None
    assert verdict(mean_interval([0.3])) == NOT_DISTINGUISHABLE


def test_paired_difference_uses_seeds_both_sides_have():
    full = {0: 0.290, 1: 0.089, 2: 0.214, 3: 0.5}
    k16 = {0: 0.410, 1: 0.374, 2: 0.389}
    got = paired_difference(full, k16)
    differences = [0.410 - 0.290, 0.374 - 0.089, 0.389 - 0.214]
    assert got.value == pytest.approx(np.mean(differences))
    assert got.n == 3
    # a constant shift is known exactly: the interval collapses onto it
    shifted = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 1.5, 1: 2.5, 2: 4.5})
    assert (shifted.value, shifted.low, shifted.high) == pytest.approx((0.5, 0.5, 0.5))
    assert verdict(shifted) == "higher"


def test_the_issue_numbers_k32_minus_k16_are_not_distinguishable():
    k16 = {0: 0.410, 1: 0.374, 2: 0.389}
    k32 = {0: 0.376, 1: 0.377, 2: 0.374}
    got = paired_difference(k16, k32)
    assert got.value == pytest.approx(-0.0153, abs=1e-4)
    assert got.low < 0 < got.high
    assert verdict(got) == NOT_DISTINGUISHABLE


def test_ratio_interval_is_a_geometric_mean_on_the_log_scale():
    dense = [800.0, 1000.0, 1250.0]
    deformable = [100.0, 125.0, 156.25]
    got = ratio_interval(dense, deformable)  # every per-seed ratio is 8
    assert (got.value, got.low, got.high) == pytest.approx((8.0, 8.0, 8.0))
    noisy = ratio_interval([700.0, 1100.0, 1200.0], [100.0, 120.0, 160.0])
    logs = np.log([7.0, 1100 / 120, 7.5])
    low, high = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    assert (noisy.low, noisy.high) == pytest.approx((math.exp(low), math.exp(high)))
    assert verdict(noisy, null=1.0) == "higher"
    unpaired = ratio_interval([700.0, 1100.0, 1200.0], [100.0, 160.0])
    assert unpaired.low < unpaired.value < unpaired.high


def test_a_censored_run_is_reported_as_such():
    # full attention reached the target in 2 of 3 seeds; the mean is over those two only
    reached = Censored((900.0, 1100.0), runs=3)
    assert reached.label == "reached in 2 of 3"
    assert reached.interval.value == pytest.approx(1000.0)
    assert reached.interval.n == 2
    assert Censored((), runs=3).interval is None
