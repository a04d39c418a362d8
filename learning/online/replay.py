"""Replay store: a recent window (FIFO) plus a seeded reservoir of older transitions.

Memory is bounded and preallocated: ``recent_size + reservoir_size`` rows of every field.
A transition evicted from the recent window is offered to the reservoir, which keeps a
uniform sample of *all* evicted transitions (reservoir sampling, Vitter's algorithm R, with
the store's own ``np.random.Generator``), so data from any earlier period (the original
layout, last month's congestion) stays represented however long the robots run.

Minibatches mix both parts: ``round(replay_fraction * n)`` rows from the reservoir, the
rest from the recent window (all from whichever part is non-empty when the other is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Batch", "ReplayStore", "Transition", "concat_batches", "transition_spec"]


@dataclass(frozen=True)
class Transition:
    """One decision of one robot (numpy, no batch dim).

    Attributes:
        obs: "proprio" [12], "occupancy" [S, S], "action_mask" [A] float32.
        action: macro action index taken.
        reward: reward of the step (reward units).
        next_obs: observation after the step (same keys as ``obs``).
        done: the episode / order ended at this step (no bootstrap).
        search_policy: [A] MCTS visit distribution at ``obs`` or None.
        search_value: MCTS root value at ``obs`` or None.
    """

    obs: Mapping[str, np.ndarray]
    action: int
    reward: float
    next_obs: Mapping[str, np.ndarray]
    done: bool
    search_policy: np.ndarray | None = None
    search_value: float | None = None


@dataclass(frozen=True)
class Batch:
    """N transitions (A actions).

    Attributes:
        obs, next_obs: key -> [N, ...] float32.
        action: [N] int64; reward: [N] float32; done: [N] bool.
        policy: [N, A] float32 search policy (zeros where ``has_policy`` is False).
        has_policy: [N] bool.
        value: [N] float32 search value (0 where ``has_value`` is False).
        has_value: [N] bool.
        from_reservoir: [N] bool the row came from the reservoir.
    """

    obs: dict[str, np.ndarray]
    next_obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    policy: np.ndarray
    has_policy: np.ndarray
    value: np.ndarray
    has_value: np.ndarray
    from_reservoir: np.ndarray

    def __len__(self) -> int:
        return len(self.action)


def concat_batches(*batches: Batch) -> Batch:
    """The rows of ``batches`` in order, one :class:`Batch`."""
    def cat(get):
        return np.concatenate([get(b) for b in batches])
    keys = list(batches[0].obs)
    return Batch(
        obs={k: cat(lambda b: b.obs[k]) for k in keys},
        next_obs={k: cat(lambda b: b.next_obs[k]) for k in keys},
        **{f: cat(lambda b, f=f: getattr(b, f)) for f in (
            "action", "reward", "done", "policy", "has_policy", "value", "has_value", "from_reservoir")},
    )


def transition_spec(obs_spec: Mapping[str, list[int]], num_actions: int) -> dict[str, tuple]:
    """Field -> (per-row shape, dtype) of the store, from a network's ``obs_spec()``."""
    spec: dict[str, tuple] = {}
    for k, shape in obs_spec.items():
        spec[f"obs.{k}"] = (tuple(shape), np.float32)
        spec[f"next_obs.{k}"] = (tuple(shape), np.float32)
    spec.update(
        action=((), np.int64),
        reward=((), np.float32),
        done=((), np.bool_),
        policy=((num_actions,), np.float32),
        has_policy=((), np.bool_),
        value=((), np.float32),
        has_value=((), np.bool_),
    )
    return spec


class _Arrays:
    """Preallocated columns of ``capacity`` rows."""

    def __init__(self, spec: Mapping[str, tuple], capacity: int) -> None:
        self.capacity = capacity
        self.cols = {k: np.zeros((capacity, *shape), dtype) for k, (shape, dtype) in spec.items()}

    def put(self, i: int, row: Mapping[str, np.ndarray]) -> None:
        for k, col in self.cols.items():
            col[i] = row[k]

    def row(self, i: int) -> dict[str, np.ndarray]:
        return {k: col[i].copy() for k, col in self.cols.items()}

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: col[idx] for k, col in self.cols.items()}


class ReplayStore:
    """Bounded replay of transitions: recent FIFO window + reservoir of evicted ones.

    Not thread-safe by itself: the online learner calls it from its own thread only.

    Args:
        obs_spec: per-sample observation shapes (``PolicyValueConfig.obs_spec()``).
        num_actions: A.
        recent_size: rows of the recent window (>= 1).
        reservoir_size: rows of the reservoir (>= 0).
        rng: the only randomness (reservoir replacement and minibatch draws).

    Example:
        >>> store = ReplayStore(net.config.obs_spec(), 7, 1024, 4096, np.random.default_rng(0))
        >>> store.add(Transition(obs, 2, -0.01, next_obs, False))
        >>> batch = store.sample(64, replay_fraction=0.5)
    """

    def __init__(
        self,
        obs_spec: Mapping[str, list[int]],
        num_actions: int,
        recent_size: int,
        reservoir_size: int,
        rng: np.random.Generator,
    ) -> None:
        if recent_size < 1 or reservoir_size < 0:
            raise ValueError(
                f"replay sizes: recent {recent_size}, reservoir {reservoir_size}; "
                "allowed recent >= 1, reservoir >= 0"
            )
        self.obs_keys = tuple(obs_spec)
        self.num_actions = int(num_actions)
        self._spec = transition_spec(obs_spec, num_actions)
        self._recent = _Arrays(self._spec, recent_size)
        self._reservoir = _Arrays(self._spec, reservoir_size)
        self.rng = rng
        self.n_added = 0  # transitions ever added
        self.n_evicted = 0  # transitions ever evicted from the recent window
        self._n_recent = 0
        self._n_reservoir = 0

    def __len__(self) -> int:
        return self._n_recent + self._n_reservoir

    @property
    def n_recent(self) -> int:
        """Rows held in the recent window."""
        return self._n_recent

    @property
    def n_reservoir(self) -> int:
        """Rows held in the reservoir."""
        return self._n_reservoir

    @property
    def nbytes(self) -> int:
        """Bytes preallocated (constant: the memory bound)."""
        parts = (self._recent, self._reservoir)
        return sum(c.nbytes for p in parts for c in p.cols.values())

    def _row(self, t: Transition) -> dict[str, np.ndarray]:
        row: dict[str, np.ndarray] = {}
        for k in self.obs_keys:
            row[f"obs.{k}"] = t.obs[k]
            row[f"next_obs.{k}"] = t.next_obs[k]
        has_p = t.search_policy is not None
        has_v = t.search_value is not None
        row.update(
            action=np.int64(t.action),
            reward=np.float32(t.reward),
            done=np.bool_(t.done),
            policy=t.search_policy if has_p else np.zeros(self.num_actions, np.float32),
            has_policy=np.bool_(has_p),
            value=np.float32(t.search_value if has_v else 0.0),
            has_value=np.bool_(has_v),
        )
        return row

    def add(self, t: Transition) -> None:
        """Appends one transition (evicting the oldest recent one into the reservoir)."""
        row = self._row(t)
        cap = self._recent.capacity
        slot = self.n_added % cap
        if self._n_recent == cap:
            self._offer(self._recent.row(slot))
        else:
            self._n_recent += 1
        self._recent.put(slot, row)
        self.n_added += 1

    def _offer(self, row: dict[str, np.ndarray]) -> None:
        """Reservoir sampling (algorithm R) over the stream of evicted rows."""
        self.n_evicted += 1
        cap = self._reservoir.capacity
        if cap == 0:
            return
        if self._n_reservoir < cap:
            self._reservoir.put(self._n_reservoir, row)
            self._n_reservoir += 1
            return
        j = int(self.rng.integers(self.n_evicted))
        if j < cap:
            self._reservoir.put(j, row)

    def sample(self, n: int, *, replay_fraction: float) -> Batch:
        """``n`` rows with replacement: ``round(replay_fraction * n)`` from the reservoir.

        Raises:
            ValueError: an empty store.
        """
        if len(self) == 0:
            raise ValueError("replay: empty store; add transitions first")
        n_old = int(round(replay_fraction * n)) if self._n_reservoir else 0
        n_old = n if self._n_recent == 0 else n_old
        n_new = n - n_old
        parts = []
        if n_new:
            parts.append(self._recent.take(self.rng.integers(self._n_recent, size=n_new)))
        if n_old:
            parts.append(self._reservoir.take(self.rng.integers(self._n_reservoir, size=n_old)))
        cols = {k: np.concatenate([p[k] for p in parts]) for k in self._spec}
        return Batch(
            obs={k: cols[f"obs.{k}"] for k in self.obs_keys},
            next_obs={k: cols[f"next_obs.{k}"] for k in self.obs_keys},
            action=cols["action"],
            reward=cols["reward"],
            done=cols["done"],
            policy=cols["policy"],
            has_policy=cols["has_policy"],
            value=cols["value"],
            has_value=cols["has_value"],
            from_reservoir=np.arange(n) >= n_new,
        )
