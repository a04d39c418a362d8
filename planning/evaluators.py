"""Evaluators: uniform, random rollouts, any function, a torch network.

Every evaluator returns ``(prior_logits [B, A] float32, values [B] float64)``. The search
masks illegal actions itself, so evaluators need not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from planning.batch import batch_size, tree_map
from planning.protocols import PlanningModel, States

__all__ = [
    "FunctionEvaluator",
    "RolloutEvaluator",
    "TorchEvaluator",
    "UniformEvaluator",
    "random_legal_actions",
]


def _rows(encoded: Any) -> int:
    return batch_size(encoded)


class UniformEvaluator:
    """Flat prior, zero value.

    Args:
        num_actions: A.
    """

    def __init__(self, num_actions: int) -> None:
        if num_actions < 1:
            raise ValueError(f"evaluator.num_actions: {num_actions}; allowed >= 1")
        self.num_actions = int(num_actions)

    def evaluate(self, encoded: Any) -> tuple[np.ndarray, np.ndarray]:
        n = _rows(encoded)
        return np.zeros((n, self.num_actions), np.float32), np.zeros(n, np.float64)

    def evaluate_states(
        self, states: States, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Same as :meth:`evaluate`, without the model encoding its states first."""
        return self.evaluate(states)


def random_legal_actions(legal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random legal action per row (action 0 where none is legal).

    Args:
        legal: [B, A] bool.
        rng: random generator.

    Returns:
        [B] int64 actions.
    """
    u = rng.random(legal.shape)
    return np.argmax(np.where(legal, u, -1.0), axis=1)


class RolloutEvaluator:
    """Flat prior; value = mean discounted return of uniformly random legal rollouts.

    Args:
        model: the planning model to roll out in.
        depth: steps per rollout (>= 0; 0 gives value 0, i.e. a uniform evaluator).
        n_rollouts: rollouts per state, averaged (>= 1).
        discount: per-step discount (use the search's discount).
        bootstrap: optional ``fn(states) -> values [B]`` added (discounted) at the end of
            rollouts that did not terminate.
    """

    def __init__(
        self,
        model: PlanningModel,
        *,
        depth: int = 20,
        n_rollouts: int = 1,
        discount: float = 0.99,
        bootstrap: Callable[[States], np.ndarray] | None = None,
    ) -> None:
        if depth < 0:
            raise ValueError(f"evaluator.depth: {depth}; allowed >= 0")
        if n_rollouts < 1:
            raise ValueError(f"evaluator.n_rollouts: {n_rollouts}; allowed >= 1")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"evaluator.discount: {discount}; allowed in [0, 1]")
        self.model, self.depth, self.n_rollouts = model, int(depth), int(n_rollouts)
        self.discount, self.bootstrap = float(discount), bootstrap
        self.num_actions = int(model.num_actions)

    def evaluate(self, encoded: Any) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError("RolloutEvaluator needs raw states; the search calls evaluate_states")

    def evaluate_states(
        self, states: States, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        n = batch_size(states)
        k = self.n_rollouts
        s = states if k == 1 else tree_map(lambda x: np.repeat(x, k, axis=0), states)
        ret = np.zeros(n * k)
        alive = np.ones(n * k, dtype=bool)
        scale = 1.0
        for _ in range(self.depth):
            a = random_legal_actions(self.model.legal_actions(s), rng)
            s, r, d = self.model.step(s, a, rng)
            ret += np.where(alive, scale * np.asarray(r, np.float64), 0.0)
            alive &= ~np.asarray(d, bool)
            scale *= self.discount
            if not alive.any():
                break
        if self.bootstrap is not None and alive.any():
            ret += np.where(alive, scale * np.asarray(self.bootstrap(s), np.float64), 0.0)
        values = ret.reshape(n, k).mean(axis=1)
        return np.zeros((n, self.num_actions), np.float32), values


class FunctionEvaluator:
    """Wraps a callable: ``fn(x) -> values [B]`` or ``fn(x) -> (prior_logits, values)``.

    Args:
        fn: the callable; ``x`` is ``model.encode(states)`` (``on="encoded"``) or the raw
            states (``on="states"``, e.g. an exact value table indexed by state).
        num_actions: A, for the flat prior when ``fn`` returns values only.
        on: what ``fn`` receives.

    Example:
        >>> v_star = np.zeros(16)  # e.g. from value iteration
        >>> ev = FunctionEvaluator(lambda s: v_star[s], num_actions=4, on="states")
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        num_actions: int,
        on: Literal["encoded", "states"] = "encoded",
    ) -> None:
        if on not in ("encoded", "states"):
            raise ValueError(f"evaluator.on: {on!r}; allowed 'encoded', 'states'")
        self.fn, self.num_actions, self.on = fn, int(num_actions), on
        if on == "states":
            self.evaluate_states = self._evaluate_states

    def evaluate(self, encoded: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._call(encoded)

    def _evaluate_states(
        self, states: States, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._call(states)

    def _call(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        out = self.fn(x)
        if isinstance(out, tuple):
            logits, values = out
            return np.asarray(logits, np.float32), np.asarray(values, np.float64).reshape(-1)
        values = np.asarray(out, np.float64).reshape(-1)
        return np.zeros((len(values), self.num_actions), np.float32), values


class TorchEvaluator:
    """Calls a torch module on the encoded batch under ``torch.inference_mode``.

    The module receives the encoded pytree with every leaf converted to a tensor on
    ``device`` and returns ``(logits [B, A], value [B] or [B, 1])``, a dict with keys
    ``"logits"`` and ``"value"``, or an object with those attributes.

    Args:
        module: a ``torch.nn.Module`` (put in eval mode here).
        device: torch device string.
    """

    def __init__(self, module: Any, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    def evaluate(self, encoded: Any) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        x = tree_map(lambda a: torch.as_tensor(np.asarray(a)).to(self.device), encoded)
        with torch.inference_mode():
            out = self.module(x)
        if isinstance(out, dict):
            logits, value = out["logits"], out["value"]
        elif isinstance(out, tuple):
            logits, value = out
        else:
            logits, value = out.logits, out.value
        logits = logits.float().cpu().numpy()
        return logits, value.double().cpu().numpy().reshape(len(logits))
