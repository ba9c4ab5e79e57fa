"""Shared fixtures: a tiny synthetic data set (4 training and 2 validation videos of 6 frames)."""

import pytest

from bench.data.synthetic import generate_synthetic


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(out, videos=4, frames=6, size=(64, 64), seed=0, val_videos=2)
    return out
