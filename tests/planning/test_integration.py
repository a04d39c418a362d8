"""Package boundaries and the network hook: dependency rule, TorchEvaluator, fleet search."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from planning import MCTS, MCTSConfig, TorchEvaluator, sample_situations


def test_planning__imports_only_allowed_packages() -> None:
    code = (
        "import sys, planning; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pybullet', 'agent', 'learning', 'perception', 'kernels', 'ray', 'matplotlib') "
        "or (m.startswith('sim.') and m not in ('sim.layout', 'sim.types'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_evaluator__drives_a_batched_fleet_search(layout) -> None:
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = torch.nn.Linear(12, 7)
            self.value = torch.nn.Linear(12, 1)

        def forward(self, obs: dict) -> tuple:
            x = obs["proprio"]
            logits = self.policy(x) + torch.log(obs["action_mask"].clamp_min(1e-6))
            return logits, self.value(x)

    torch.manual_seed(0)
    model, states = sample_situations(
        layout, ["open", "blocked", "congested"] * 2, np.random.default_rng(0)
    )
    res = MCTS(model, TorchEvaluator(TinyNet()), MCTSConfig(num_simulations=8, rule="gumbel"))
    out = res.search(states, seed=0)
    assert out.action.shape == (6,) and out.simulations_done == 8
    assert model.legal_actions(states)[np.arange(6), out.action].all()
    np.testing.assert_allclose(out.policy.sum(1), 1.0, rtol=1e-6)
