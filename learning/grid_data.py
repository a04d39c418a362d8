"""Seeded pre-training data on the grid model: states, expert targets, sibling groups.

1. **Situations** from :func:`planning.situations.sample_situations`, cycling the kinds
   "open" (free aisles), "blocked" (known blockages on the route) and "congested"
   (robots whose announced plans start on the route). A fraction starts loaded (goal =
   station) and a fraction late (``t`` uniform in ``[0, horizon)``).
2. **States**: each situation is played ``record_steps`` steps by an epsilon-greedy
   expert and every non-terminal visited state is kept (off-route states, picked loads,
   cleared blockages, parked robots).
3. **Targets** from :class:`learning.expert.ShortestPathExpert`: *policy* = uniform over
   the expert's optimal actions; *value* = discounted return of the greedy expert played
   from the state in the grid model itself (its rewards, discount, horizon, blockage
   clearing, robot waits). With the default model (episodes end at the first delivery,
   as in :func:`planning.evaluation.run_planning_eval`) this is the return of the
   current order: exact for open situations, sampled for stochastic ones. An empty
   robot cannot observe its order's station, so it is valued for the station farthest
   from its pick cell (:func:`value_targets` explains why not the mean). Without
   ``terminate_on_delivery`` the play stops at the first delivery and adds the exact
   expected return of later orders (:func:`learning.expert.open_world_values`).
4. **Sibling groups**: for ``n_groups`` of the states, every legal action is applied once
   and the resulting ``Q(a) = r + discount * V(next)`` recorded with the next states'
   observations. At 2-8 simulations the search decides between siblings by their Q,
   whose true gaps are ~0.02 (one step of time cost and discount) while values span
   ~1, so a loss on centred sibling Q values (:func:`learning.pretrain.group_loss`)
   trains exactly the comparisons the search makes.

All randomness comes from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from learning.expert import ShortestPathExpert, expert_returns, open_world_values
from planning.evaluators import random_legal_actions
from planning.grid_model import GridModel, GridModelConfig, GridState
from planning.paths import bfs_distances
from planning.situations import SITUATION_KINDS, sample_situations
from sim.layout import Layout
from sim.types import MacroAction

__all__ = [
    "OBS_KEYS",
    "GridDataConfig",
    "GroupDataset",
    "PVDataset",
    "farthest_station",
    "holdout_mask",
    "make_datasets",
    "sample_training_states",
    "value_targets",
]

OBS_KEYS = ("proprio", "occupancy", "action_mask")


@dataclass(frozen=True)
class GridDataConfig:
    """What data to generate (validated; ValueError names the field).

    Attributes:
        n_situations: seeded situations (each played ``record_steps`` steps).
        kinds: situation kinds, cycled over the situations.
        record_steps: behaviour steps recorded per situation.
        epsilon: probability of a random legal behaviour action.
        p_loaded: fraction of situations starting loaded.
        p_late_start: fraction starting at ``t`` uniform in ``[0, horizon)``.
        value_rollouts: expert plays averaged per value target.
        station_value: which station an empty state is valued for, "farthest" (from
            its pick cell) or "mean" over all (see :func:`value_targets`).
        n_groups: states expanded into sibling groups (0 = none).
        discount: per-step discount of the targets (the search's discount).
        holdout: fraction of situations kept for validation.
        n_others: other-robot slots per situation.
        n_blocks: blockage slots per situation.
        horizon_steps: grid-model episode length, steps (``t / horizon`` is an input).
        terminate_on_delivery: grid-model episodes end at the first delivery. The
            defaults match :func:`planning.evaluation.run_planning_eval`.
    """

    n_situations: int = 8192
    kinds: tuple[str, ...] = SITUATION_KINDS
    record_steps: int = 6
    epsilon: float = 0.25
    p_loaded: float = 0.3
    p_late_start: float = 0.2
    value_rollouts: int = 1
    station_value: Literal["farthest", "mean"] = "farthest"
    n_groups: int = 8192
    discount: float = 0.99
    holdout: float = 0.1
    n_others: int = 4
    n_blocks: int = 2
    horizon_steps: int = 60
    terminate_on_delivery: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("n_situations", self.n_situations >= 2, "integer >= 2"),
            (
                "kinds",
                len(self.kinds) > 0 and set(self.kinds) <= set(SITUATION_KINDS),
                f"non-empty subset of {SITUATION_KINDS}",
            ),
            ("record_steps", self.record_steps >= 1, "integer >= 1"),
            ("epsilon", 0.0 <= self.epsilon <= 1.0, "in [0, 1]"),
            ("p_loaded", 0.0 <= self.p_loaded <= 1.0, "in [0, 1]"),
            ("p_late_start", 0.0 <= self.p_late_start <= 1.0, "in [0, 1]"),
            ("value_rollouts", self.value_rollouts >= 1, "integer >= 1"),
            ("station_value", self.station_value in ("farthest", "mean"), "'farthest', 'mean'"),
            ("n_groups", self.n_groups >= 0, "integer >= 0"),
            ("discount", 0.0 < self.discount <= 1.0, "in (0, 1]"),
            ("holdout", 0.0 <= self.holdout < 1.0, "in [0, 1)"),
            ("n_others", self.n_others >= 0, "integer >= 0"),
            ("n_blocks", self.n_blocks >= 0, "integer >= 0"),
            ("horizon_steps", self.horizon_steps >= 1, "integer >= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"data.{name}: {getattr(self, name)!r}; allowed {allowed}")

    def model_config(self) -> GridModelConfig:
        """The grid-model settings the data is generated with."""
        return GridModelConfig(
            horizon_steps=self.horizon_steps, terminate_on_delivery=self.terminate_on_delivery
        )


@dataclass(frozen=True)
class PVDataset:
    """Encoded states and targets (N samples, A actions, S crop side).

    Attributes:
        obs: "proprio" [N, 12], "occupancy" [N, S, S], "action_mask" [N, A] float32.
        policy: [N, A] float32 target distribution (rows sum to 1).
        value: [N] float32 target discounted return (reward units).
        kind: [N] int64 index into ``SITUATION_KINDS``.
        situation: [N] int64 situation each sample comes from.
    """

    obs: dict[str, np.ndarray]
    policy: np.ndarray
    value: np.ndarray
    kind: np.ndarray
    situation: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    def take(self, rows: np.ndarray) -> PVDataset:
        """The samples ``rows``."""
        return PVDataset(
            {k: v[rows] for k, v in self.obs.items()},
            self.policy[rows],
            self.value[rows],
            self.kind[rows],
            self.situation[rows],
        )


@dataclass(frozen=True)
class GroupDataset:
    """Sibling groups: every legal action applied to one state (G groups, A actions).

    Attributes:
        obs: next-state observations, "proprio" [G, A, 12], "occupancy" [G, A, S, S],
            "action_mask" [G, A, A] float32 (zeros where ``has_next`` is False).
        legal: [G, A] bool the action is legal in the group's state.
        has_next: [G, A] bool the next state is non-terminal (its value counts).
        reward: [G, A] float32 reward of the action.
        q: [G, A] float32 target ``reward + discount * V(next)`` (0 value if terminal).
        situation: [G] int64 situation of the group's state.
    """

    obs: dict[str, np.ndarray]
    legal: np.ndarray
    has_next: np.ndarray
    reward: np.ndarray
    q: np.ndarray
    situation: np.ndarray

    def __len__(self) -> int:
        return len(self.q)

    def take(self, rows: np.ndarray) -> GroupDataset:
        """The groups ``rows``."""
        return GroupDataset(
            {k: v[rows] for k, v in self.obs.items()},
            self.legal[rows],
            self.has_next[rows],
            self.reward[rows],
            self.q[rows],
            self.situation[rows],
        )


def _take(states: GridState, rows: np.ndarray) -> GridState:
    return GridState(**{k: v[rows] for k, v in vars(states).items()})


def _concat(parts: list[GridState]) -> GridState:
    return GridState(**{k: np.concatenate([vars(p)[k] for p in parts]) for k in vars(parts[0])})


def _start_states(
    model: GridModel, states: GridState, cfg: GridDataConfig, rng: np.random.Generator
) -> GridState:
    b = len(states)
    load = rng.random(b) < cfg.p_loaded
    late = rng.random(b) < cfg.p_late_start
    t = np.where(late, rng.integers(0, model.config.horizon_steps, b), 0)
    return model.replace(states, load=load, t=t.astype(np.int64))


def sample_training_states(
    layout: Layout, cfg: GridDataConfig, rng: np.random.Generator
) -> tuple[GridModel, GridState, np.ndarray, np.ndarray]:
    """Situations played by the epsilon-greedy expert; every visited non-terminal state.

    Returns:
        (model, states [N], kind [N] int64, situation [N] int64).
    """
    kinds = [cfg.kinds[i % len(cfg.kinds)] for i in range(cfg.n_situations)]
    model, states = sample_situations(
        layout, kinds, rng, config=cfg.model_config(), n_others=cfg.n_others, n_blocks=cfg.n_blocks
    )
    states = _start_states(model, states, cfg, rng)
    expert = ShortestPathExpert(model)
    kind_id = np.array([SITUATION_KINDS.index(k) for k in kinds], np.int64)
    sit = np.arange(len(kinds))
    alive = states.t < model.config.horizon_steps
    rec, rec_kind, rec_sit = [], [], []
    for _ in range(cfg.record_steps):
        rows = np.flatnonzero(alive)
        rec.append(_take(states, rows))
        rec_kind.append(kind_id[rows])
        rec_sit.append(sit[rows])
        a = expert.act(states, rng)
        explore = rng.random(len(a)) < cfg.epsilon
        a = np.where(explore, random_legal_actions(model.legal_actions(states), rng), a)
        states, _, done = model.step(states, a, rng)
        alive &= ~done
    return model, _concat(rec), np.concatenate(rec_kind), np.concatenate(rec_sit)


def farthest_station(model: GridModel) -> np.ndarray:
    """[H*W] int64: for each pick cell, the station farthest from it on the static map."""
    lay = model.layout
    out = np.full(lay.free.size, -1, np.int64)
    for p, (r, c) in zip(model.pick_cells, model.to_cells(model.pick_cells)):
        d = bfs_distances(lay.free, (int(r), int(c))).ravel()[model.station_cells]
        out[p] = model.station_cells[int(np.argmax(d))]
    return out


def value_targets(
    expert: ShortestPathExpert, states: GridState, rng: np.random.Generator, cfg: GridDataConfig
) -> np.ndarray:
    """[N] float64 expert returns (mean of ``value_rollouts`` plays).

    An empty robot's observation does not show its order's station (the goal vector
    points at the pick cell), so an empty state is valued for a station that is a
    function of what it observes (``cfg.station_value``): ``"farthest"`` (default) plays
    it with the station farthest from its pick cell, ``"mean"`` averages the plays
    over all stations. The mean is the regression optimum, but a search compares PICK,
    whose next state shows the actual station, with moves whose next states average
    over stations: when the actual station is far, the averaged siblings look better
    and a search with few simulations refuses to pick. With the farthest station the
    empty values are exact Bellman backups among empty siblings (it depends only on the
    observed pick cell) and, in an open aisle, ``Q(PICK) >= V`` for every station.
    """
    model = expert.model
    n_st, k = len(model.station_cells), cfg.value_rollouts
    mean = cfg.station_value == "mean"
    slots = np.where(states.load | (not mean), 1, n_st)  # [N] stations played per state
    slot_state = np.repeat(np.arange(len(states)), slots)  # [M]
    slot_index = np.arange(len(slot_state)) - np.repeat(np.cumsum(slots) - slots, slots)
    rows = np.repeat(np.arange(len(slot_state)), k)  # [M * k] plays
    plays = _take(states, slot_state[rows])
    empty_station = (
        model.station_cells[slot_index[rows]] if mean else farthest_station(model)[plays.pick]
    )
    plays = model.replace(plays, station=np.where(plays.load, plays.station, empty_station))
    table = open_world_values(model, cfg.discount)
    ret = expert_returns(expert, plays, rng, discount=cfg.discount, continuation=table)
    return np.bincount(slot_state[rows], weights=ret, minlength=len(states)) / (slots * k)


def _groups(
    expert: ShortestPathExpert,
    roots: GridState,
    sit: np.ndarray,
    rng: np.random.Generator,
    cfg: GridDataConfig,
) -> GroupDataset:
    """Applies every legal action to each root once; targets for the next states."""
    model = expert.model
    g, a_n = len(roots), model.num_actions
    legal = model.legal_actions(roots)  # [G, A]
    gi, ai = np.nonzero(legal)
    nxt, reward, done = model.step(_take(roots, gi), ai, rng)
    live = np.flatnonzero(~done)
    value = np.zeros(len(gi))
    value[live] = value_targets(expert, _take(nxt, live), rng, cfg)
    enc = model.encode(_take(nxt, live))
    obs = {k: np.zeros((g, a_n, *v.shape[1:]), np.float32) for k, v in enc.items()}
    for k, v in enc.items():
        obs[k][gi[live], ai[live]] = v
    has_next = np.zeros((g, a_n), bool)
    has_next[gi[live], ai[live]] = True
    r = np.zeros((g, a_n), np.float32)
    r[gi, ai] = reward
    q = np.zeros((g, a_n), np.float32)
    q[gi, ai] = reward + cfg.discount * value
    return GroupDataset({k: obs[k] for k in OBS_KEYS}, legal, has_next, r, q, sit)


def _group_roots(
    model: GridModel, states: GridState, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted indices of ``n`` group roots: every state where PICK or DROP is legal first
    (the load flag and the goal vector jump there, the hardest sibling comparison), then
    uniformly random others."""
    legal = model.legal_actions(states)
    finish = legal[:, MacroAction.PICK] | legal[:, MacroAction.DROP]
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(finish)), rng.permutation(np.flatnonzero(~finish))]
    )
    return np.sort(order[:n])


def make_datasets(
    layout: Layout, cfg: GridDataConfig, rng: np.random.Generator
) -> tuple[PVDataset, GroupDataset]:
    """Seeded states with expert targets, and sibling groups of ``n_groups`` of them."""
    model, states, kind, sit = sample_training_states(layout, cfg, rng)
    expert = ShortestPathExpert(model)
    policy = expert.policy_target(states)
    value = value_targets(expert, states, rng, cfg)
    obs = model.encode(states)
    data = PVDataset(
        {n: obs[n].astype(np.float32) for n in OBS_KEYS},
        policy.astype(np.float32),
        value.astype(np.float32),
        kind,
        sit,
    )
    roots = _group_roots(model, states, cfg.n_groups, rng)
    groups = _groups(expert, _take(states, roots), sit[roots], rng, cfg)
    return data, groups


def holdout_mask(situation: np.ndarray, cfg: GridDataConfig) -> np.ndarray:
    """[N] bool: the sample's situation is in the validation part (the last ``holdout``)."""
    return situation >= round(cfg.n_situations * (1.0 - cfg.holdout))
