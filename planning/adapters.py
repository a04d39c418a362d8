"""Adapters that turn other environments into :class:`planning.PlanningModel` s.

:class:`TabularModel` wraps any gymnasium toy-text env that exposes its transition
table ``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]``
(FrozenLake, CliffWalking, Taxi).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TabularModel", "greedy_policy", "value_iteration"]


@dataclass(frozen=True, eq=False)
class TabularModel:
    """A tabular MDP as a batched planning model; states are int64 arrays [B].

    Terminal states (the targets of terminating transitions) are absorbing: stepping
    from one stays there with reward 0 and ``done`` True.

    Attributes:
        probs: [S, A, K] outcome probabilities (zero-padded).
        next_state: [S, A, K] int64 outcome states.
        reward: [S, A, K] float64 outcome rewards.
        done: [S, A, K] bool outcome terminations.
        terminal: [S] bool absorbing terminal states.
    """

    probs: np.ndarray
    next_state: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    terminal: np.ndarray

    def __post_init__(self) -> None:
        cum = np.cumsum(self.probs, axis=2)
        cum[..., -1] = np.inf  # guard against rounding: the last outcome takes the rest
        object.__setattr__(self, "_cum", cum)

    @classmethod
    def from_env(cls, env: Any) -> TabularModel:
        """Build from a gymnasium env whose ``unwrapped.P`` is a transition table.

        Raises:
            ValueError: the env has no ``unwrapped.P`` table.
        """
        table = getattr(getattr(env, "unwrapped", env), "P", None)
        if not isinstance(table, dict) or not table:
            raise ValueError(
                "env.unwrapped.P: missing; allowed toy-text envs with a transition "
                "table (FrozenLake, CliffWalking, Taxi)"
            )
        n_s = len(table)
        n_a = max(len(v) for v in table.values())
        k = max(len(o) for v in table.values() for o in v.values())
        probs = np.zeros((n_s, n_a, k))
        nxt = np.repeat(np.arange(n_s)[:, None, None], n_a, axis=1).repeat(k, axis=2)
        rew = np.zeros((n_s, n_a, k))
        done = np.zeros((n_s, n_a, k), bool)
        for s, acts in table.items():
            for a, outs in acts.items():
                for i, (p, s2, r, d) in enumerate(outs):
                    probs[s, a, i], nxt[s, a, i], rew[s, a, i], done[s, a, i] = p, int(s2), r, d
        terminal = np.zeros(n_s, bool)
        terminal[nxt[done & (probs > 0)]] = True
        probs[terminal] = 0.0
        probs[terminal, :, 0] = 1.0
        nxt[terminal] = np.arange(n_s)[terminal, None, None]
        rew[terminal] = 0.0
        done[terminal] = True
        return cls(probs, nxt.astype(np.int64), rew, done, terminal)

    # ---- PlanningModel ---------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return self.probs.shape[0]

    @property
    def num_actions(self) -> int:
        return self.probs.shape[1]

    @property
    def deterministic(self) -> bool:
        return bool((self.probs.max(axis=2) == 1.0).all())

    def legal_actions(self, states: np.ndarray) -> np.ndarray:
        """[B, A] all True (toy-text envs accept every action)."""
        return np.ones((len(states), self.num_actions), bool)

    def step(
        self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample one outcome per row from the table."""
        s = np.asarray(states, np.int64)
        a = np.asarray(actions, np.int64)
        u = rng.random(len(s))
        k = (self._cum[s, a] < u[:, None]).sum(axis=1)  # type: ignore[attr-defined]
        return self.next_state[s, a, k], self.reward[s, a, k], self.done[s, a, k]

    def transition_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(cumulative probs [S, A, K] float64, next_state [S, A, K] int64, reward [S, A, K]
        float64, done [S, A, K] bool): lets a transposition search sample transitions
        inside its compiled kernels (states are the int64 keys)."""
        cum = self._cum  # type: ignore[attr-defined]
        return cum, self.next_state, self.reward, self.done

    def state_keys(self, states: np.ndarray) -> np.ndarray:
        """[B] int64 key per state (the state index): enables ``transpositions``."""
        return np.asarray(states, np.int64)

    def encode(self, states: np.ndarray) -> dict[str, np.ndarray]:
        """{"obs": [B, S] float32 one-hot, "action_mask": [B, A] float32}."""
        s = np.asarray(states, np.int64)
        obs = np.zeros((len(s), self.num_states), np.float32)
        obs[np.arange(len(s)), s] = 1.0
        return {"obs": obs, "action_mask": np.ones((len(s), self.num_actions), np.float32)}


def value_iteration(
    model: TabularModel, discount: float, *, tol: float = 1e-10, max_iter: int = 100_000
) -> np.ndarray:
    """Optimal state values [S] of ``model`` (terminal states are worth 0)."""
    v = np.zeros(model.num_states)
    for _ in range(max_iter):
        q = (
            model.probs * (model.reward + discount * np.where(model.done, 0.0, v[model.next_state]))
        ).sum(2)
        v_new = np.where(model.terminal, 0.0, q.max(axis=1))
        if np.max(np.abs(v_new - v)) < tol:
            return v_new
        v = v_new
    return v


def greedy_policy(model: TabularModel, v: np.ndarray, discount: float) -> np.ndarray:
    """[S] int64 greedy actions with respect to state values ``v`` (first on ties)."""
    q = (
        model.probs * (model.reward + discount * np.where(model.done, 0.0, v[model.next_state]))
    ).sum(2)
    return np.argmax(q, axis=1)
