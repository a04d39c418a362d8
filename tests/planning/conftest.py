"""Shared fixtures for the planning tests: small models and layouts."""

from __future__ import annotations

import numpy as np
import pytest

from sim.layout import Layout, LayoutConfig, generate_layout


class RandomTransitionModel:
    """A deterministic random MDP: states int [B]; some actions illegal; some states terminal.

    Rewards in [-1, 0]; terminal states are absorbing with reward 0.
    """

    deterministic = True

    def __init__(
        self,
        n_states: int = 200,
        num_actions: int = 7,
        seed: int = 0,
        p_illegal: float = 0.2,
        p_terminal: float = 0.05,
    ) -> None:
        r = np.random.default_rng(seed)
        self.num_actions = num_actions
        self.next = r.integers(0, n_states, (n_states, num_actions))
        self.reward = r.uniform(-1.0, 0.0, (n_states, num_actions))
        self.legal = r.random((n_states, num_actions)) >= p_illegal
        self.legal[np.arange(n_states), r.integers(0, num_actions, n_states)] = True
        self.terminal = r.random(n_states) < p_terminal
        self.terminal[0] = False

    def legal_actions(self, s: np.ndarray) -> np.ndarray:
        return self.legal[s]

    def step(self, s: np.ndarray, a: np.ndarray, rng: np.random.Generator):
        nxt = self.next[s, a]
        return nxt, self.reward[s, a], self.terminal[nxt]

    def state_keys(self, s: np.ndarray) -> np.ndarray:
        return np.asarray(s, np.int64)

    def encode(self, s: np.ndarray) -> np.ndarray:
        return s


class TreeShapedModel:
    """A deterministic model whose states never repeat (state = path code), for checking
    that graph search equals tree search when there are no transpositions."""

    deterministic = True
    num_actions = 3

    def legal_actions(self, s: np.ndarray) -> np.ndarray:
        return np.ones((len(s), 3), bool)

    def step(self, s: np.ndarray, a: np.ndarray, rng: np.random.Generator):
        nxt = s * 3 + a + 1
        r = -((nxt * 2654435761) % 1000) / 1000.0  # pseudo-random, tie-free rewards
        return nxt, r, np.zeros(len(s), bool)

    def state_keys(self, s: np.ndarray) -> np.ndarray:
        return np.asarray(s, np.int64)

    def encode(self, s: np.ndarray) -> np.ndarray:
        return s


class NoisyChainModel:
    """A stochastic model: state int [B]; action 1 moves +1 w.p. 0.7 (else stays),
    action 0 stays; reward 1 on reaching ``length``, which is terminal."""

    num_actions = 2
    deterministic = False

    def __init__(self, length: int = 4) -> None:
        self.length = length

    def legal_actions(self, s: np.ndarray) -> np.ndarray:
        return np.ones((len(s), 2), bool)

    def step(self, s: np.ndarray, a: np.ndarray, rng: np.random.Generator):
        adv = (a == 1) & (rng.random(len(s)) < 0.7)
        nxt = np.minimum(s + adv, self.length)
        done = nxt >= self.length
        return nxt, done.astype(float), done

    def state_keys(self, s: np.ndarray) -> np.ndarray:
        return np.asarray(s, np.int64)

    def encode(self, s: np.ndarray) -> np.ndarray:
        return s


@pytest.fixture(scope="session")
def layout() -> Layout:
    return generate_layout(LayoutConfig())


@pytest.fixture(scope="session")
def small_layout() -> Layout:
    return generate_layout(LayoutConfig(shelf_rows=1, shelf_cols=2, n_stations=2))


@pytest.fixture
def random_model() -> RandomTransitionModel:
    return RandomTransitionModel()
