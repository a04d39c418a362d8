"""The two extension points of the search: a batched model and a batched evaluator.

Shapes: ``B`` = batch (independent roots / leaves), ``A`` = number of actions.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

States = Any  # pytree of np.ndarray with leading dim B (see planning.batch)

__all__ = ["Evaluator", "PlanningModel", "StateEvaluator", "States"]


@runtime_checkable
class PlanningModel(Protocol):
    """A batched, possibly stochastic environment model.

    Attributes:
        num_actions: A.
        deterministic: optional; if True the search never stores more than one sampled
            child per edge (``MCTSConfig.chance_samples`` is ignored).

    Optional method ``state_keys(states) -> np.ndarray`` ([B] int64): a key that
    identifies a state (equal keys = the same state, including whether it is terminal).
    Required by ``MCTSConfig(transpositions=True)``, which then keeps one node per key.
    """

    num_actions: int

    def legal_actions(self, states: States) -> np.ndarray:
        """[B, A] bool; terminal states may allow anything (they are never expanded)."""
        ...

    def step(
        self, states: States, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[States, np.ndarray, np.ndarray]:
        """Apply ``actions`` [B] int -> (next_states, rewards [B] float, dones [B] bool).

        Stochastic models sample the transition with ``rng``. A done next state is
        terminal: its value is zero and the search never expands it.
        """
        ...

    def encode(self, states: States) -> Any:
        """Evaluator input for ``states`` (e.g. a dict of float32 arrays with leading B)."""
        ...


@runtime_checkable
class Evaluator(Protocol):
    """Maps encoded states to a policy prior and a value."""

    def evaluate(self, encoded: Any) -> tuple[np.ndarray, np.ndarray]:
        """-> (prior_logits [B, A] float, values [B] float)."""
        ...


@runtime_checkable
class StateEvaluator(Protocol):
    """An evaluator that needs raw model states and randomness (e.g. rollouts).

    The search calls ``evaluate_states`` instead of ``evaluate(model.encode(...))`` when
    an evaluator has it.
    """

    def evaluate_states(
        self, states: States, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """-> (prior_logits [B, A] float, values [B] float)."""
        ...
