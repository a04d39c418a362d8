"""The planner's ``evaluator=network``: a :class:`PolicyValueNet` behind the planning protocol.

:class:`NetworkEvaluator` implements :class:`planning.protocols.Evaluator` on the grid
model's :meth:`~planning.grid_model.GridModel.encode` output: a dict of numpy arrays
(``proprio`` [B, 12], ``occupancy`` [B, S, S], ``action_mask`` [B, 7]) in, numpy
``(prior_logits [B, 7] float32, values [B] float32)`` out. Inference runs in eval mode
under ``torch.no_grad``; the same input gives the same output (no dropout, no sampling).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from learning.checkpoint import load_policy_value
from learning.network import PolicyValueNet

__all__ = ["DEFAULT_WEIGHTS", "GRID_PV_WEIGHTS", "RL_PV_WEIGHTS", "NetworkEvaluator", "load_network_evaluator"]

GRID_PV_WEIGHTS = Path(__file__).parent / "weights" / "grid_pv.safetensors"  # expert-trained warm start
RL_PV_WEIGHTS = Path(__file__).parent / "weights" / "rl_pv.safetensors"  # PPO + value fit (docs/TRAINING.md)
# rl_pv is the default since the online gate's value check became scale-free (its value is
# the continuing fleet return, grid_pv's the return to the first delivery: docs/TRAINING.md).
DEFAULT_WEIGHTS = RL_PV_WEIGHTS


class NetworkEvaluator:
    """Batched prior + value from a policy/value network.

    Args:
        net: the network (moved to ``device`` and put in eval mode here).
        device: torch device string ("cpu", "cuda", ...).
        max_batch: rows per forward pass (larger batches are chunked), >= 1.

    Example:
        >>> ev = NetworkEvaluator(PolicyValueNet())
        >>> logits, values = ev.evaluate(model.encode(states))   # [B, 7], [B]
        >>> mcts = MCTS(model, ev, MCTSConfig(num_simulations=16))
    """

    def __init__(self, net: PolicyValueNet, device: str = "cpu", *, max_batch: int = 4096) -> None:
        if max_batch < 1:
            raise ValueError(f"evaluator.max_batch: {max_batch}; allowed >= 1")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.num_actions = net.config.num_actions
        self.max_batch = int(max_batch)
        self._keys = tuple(net.config.obs_spec())

    def evaluate(self, encoded: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Encoded states -> (prior_logits [B, A] float32, values [B] float32).

        Keys other than the network's inputs (``proprio``, ``occupancy``,
        ``action_mask``) are ignored; ``proprio`` is required.
        """
        if "proprio" not in encoded:
            raise ValueError(
                "evaluator input: missing key 'proprio'; allowed the dict of "
                "GridModel.encode (proprio, occupancy, action_mask)"
            )
        n = len(encoded["proprio"])
        logits = np.empty((n, self.num_actions), np.float32)
        values = np.empty(n, np.float32)
        self.net.eval()
        with torch.no_grad():
            for s in range(0, n, self.max_batch):
                x = {
                    k: torch.as_tensor(
                        np.asarray(encoded[k][s : s + self.max_batch], np.float32),
                        device=self.device,
                    )
                    for k in self._keys
                    if k in encoded
                }
                out = self.net(x)
                logits[s : s + self.max_batch] = out.logits.float().cpu().numpy()
                values[s : s + self.max_batch] = out.value.float().cpu().numpy()
        return logits, values


def load_network_evaluator(path: str | Path | None = None, device: str = "cpu") -> NetworkEvaluator:
    """A :class:`NetworkEvaluator` on checkpoint ``path`` (default: ``DEFAULT_WEIGHTS``, the shipped RL weights)."""
    net, _ = load_policy_value(DEFAULT_WEIGHTS if path is None else path)
    return NetworkEvaluator(net, device)
