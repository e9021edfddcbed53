"""Shared fixtures: small batches of real images."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fashion_batch():
    """64 real Fashion-MNIST test images in [0, 1], (64, 1, 28, 28)."""
    from codesign.data import load_dataset, sample_batch

    splits = load_dataset("fashion-mnist", limit_train=1000, limit_test=64)
    x, _ = sample_batch(splits, 64, split="test")
    return x
