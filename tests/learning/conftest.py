"""Shared fixtures of the learning tests: the default layout, small nets, grid situations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learning_helpers import EVAL_MODEL

from planning.situations import sample_situations
from sim.layout import LayoutConfig, generate_layout


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def layout():
    return generate_layout(LayoutConfig())


@pytest.fixture(scope="session")
def situations(layout):
    """(model, states) of 12 mixed situations, seeded."""
    kinds = ["open", "blocked", "congested"] * 4
    return sample_situations(layout, kinds, np.random.default_rng(5), config=EVAL_MODEL)
