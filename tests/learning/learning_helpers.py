"""Helpers shared by the learning tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import torch

from learning.network import PolicyValueConfig, PolicyValueNet
from planning.grid_model import GridModelConfig

EVAL_MODEL = GridModelConfig(terminate_on_delivery=True, horizon_steps=60)


def small_net(seed: int = 0, **kw) -> PolicyValueNet:
    cfg = PolicyValueConfig(**{"d_model": 32, "n_heads": 2, "n_layers": 1, "head_hidden": 32, **kw})
    return PolicyValueNet(cfg, generator=torch.Generator().manual_seed(seed))
