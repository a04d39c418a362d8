"""Supervised pre-training of :class:`PolicyValueNet` on the grid model (AlphaZero-style targets).

Data (seeded, :func:`make_dataset`):

1. Situations from :func:`planning.situations.sample_situations` on the layout, cycling
   the kinds "open" (free aisles), "blocked" (known blockages on the route) and
   "congested" (robots whose announced plans start on the route). A fraction starts
   loaded (goal = station) and a fraction late in the episode (``t`` uniform in
   ``[0, horizon)``), so the time and load inputs vary.
2. Each situation is played ``record_steps`` steps by an epsilon-greedy expert (random
   legal action with probability ``epsilon``) and every visited state is recorded, so
   the data holds off-route states, picked loads, cleared blockages and parked robots.
3. Targets per state, from :class:`learning.expert.ShortestPathExpert`:
   **policy** = uniform over the expert's optimal actions (shortest path through cells
   without active blockages or parked robots, stepping around moving robots);
   **value** = discounted return of the greedy expert from the state, played in the
   grid model itself (same rewards, ``discount``, horizon, stochastic blockage clearing
   and robot waits). The default model ends the episode at the first delivery (as
   :func:`planning.evaluation.run_planning_eval` does), so the value is the return of
   the current order: exact for open situations, a sample for stochastic ones
   (averaged over ``value_rollouts`` plays). An empty robot does not observe its
   order's station, so its target is averaged over the stations (:func:`value_targets`). With ``terminate_on_delivery=False`` the
   play stops at the first delivery and adds the exact expected return of the later
   random orders in an open warehouse (:func:`learning.expert.open_world_values`):
   sampling those orders instead is unbiased but noisy (noise variance 0.11 against a
   signal variance of 0.05 on open situations).

Training (:func:`train_policy_value`): Adam, cosine learning rate, loss
``CE(policy target, logits) + value_weight * MSE(value target, value)`` (:func:`pv_loss`).
Every random draw comes from the seed in :class:`PretrainConfig`, so the same config and
seed give bit-identical weights (on one thread).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from learning.expert import ShortestPathExpert, expert_returns, open_world_values
from learning.network import PolicyValueConfig, PolicyValueNet
from planning.evaluators import random_legal_actions
from planning.grid_model import GridModel, GridModelConfig, GridState
from planning.situations import SITUATION_KINDS, sample_situations
from sim.layout import Layout

__all__ = ["PVDataset", "PretrainConfig", "TrainLog", "action_agreement", "make_dataset",
           "pretrain", "pv_loss", "train_policy_value"]

OBS_KEYS = ("proprio", "occupancy", "action_mask")


@dataclass(frozen=True)
class PretrainConfig:
    """Data and optimisation settings of pre-training (validated; ValueError names the field).

    Attributes:
        seed: the only source of randomness (data, initialisation, batches).
        n_situations: seeded situations generated (each played ``record_steps`` steps).
        kinds: situation kinds, cycled over the situations.
        record_steps: behaviour steps recorded per situation.
        epsilon: probability of a random legal behaviour action.
        p_loaded: fraction of situations starting loaded.
        p_late_start: fraction starting at ``t`` uniform in ``[0, horizon)``.
        value_rollouts: expert rollouts averaged per value target.
        discount: per-step discount of the value target (the search's discount).
        holdout: fraction of situations kept for validation.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: peak learning rate (cosine decay to ``lr / 20``).
        weight_decay: AdamW weight decay.
        value_weight: weight of the value MSE in the loss.
        n_others: other-robot slots per situation.
        n_blocks: blockage slots per situation.
        horizon_steps: grid-model episode length, steps (``t / horizon`` is an input).
        terminate_on_delivery: grid-model episodes end at the first delivery (the value
            is then the return of the current order). The defaults match
            :func:`planning.evaluation.run_planning_eval` (60 steps, terminating).
    """

    seed: int = 0
    n_situations: int = 2048
    kinds: tuple[str, ...] = SITUATION_KINDS
    record_steps: int = 16
    epsilon: float = 0.25
    p_loaded: float = 0.3
    p_late_start: float = 0.2
    value_rollouts: int = 1
    discount: float = 0.99
    holdout: float = 0.1
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    value_weight: float = 1.0
    n_others: int = 4
    n_blocks: int = 2
    horizon_steps: int = 60
    terminate_on_delivery: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("n_situations", self.n_situations >= 2, "integer >= 2"),
            ("kinds", len(self.kinds) > 0 and set(self.kinds) <= set(SITUATION_KINDS),
             f"non-empty subset of {SITUATION_KINDS}"),
            ("record_steps", self.record_steps >= 1, "integer >= 1"),
            ("epsilon", 0.0 <= self.epsilon <= 1.0, "in [0, 1]"),
            ("p_loaded", 0.0 <= self.p_loaded <= 1.0, "in [0, 1]"),
            ("p_late_start", 0.0 <= self.p_late_start <= 1.0, "in [0, 1]"),
            ("value_rollouts", self.value_rollouts >= 1, "integer >= 1"),
            ("discount", 0.0 < self.discount <= 1.0, "in (0, 1]"),
            ("holdout", 0.0 <= self.holdout < 1.0, "in [0, 1)"),
            ("steps", self.steps >= 0, "integer >= 0"),
            ("batch_size", self.batch_size >= 1, "integer >= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("value_weight", self.value_weight >= 0, ">= 0"),
            ("n_others", self.n_others >= 0, "integer >= 0"),
            ("n_blocks", self.n_blocks >= 0, "integer >= 0"),
            ("horizon_steps", self.horizon_steps >= 1, "integer >= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"pretrain.{name}: {getattr(self, name)!r}; allowed {allowed}")

    def model_config(self) -> GridModelConfig:
        """The grid-model settings the data is generated with."""
        return GridModelConfig(horizon_steps=self.horizon_steps,
                               terminate_on_delivery=self.terminate_on_delivery)


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
        return PVDataset({k: v[rows] for k, v in self.obs.items()}, self.policy[rows],
                         self.value[rows], self.kind[rows], self.situation[rows])


@dataclass
class TrainLog:
    """Per-step training curves and the final validation metrics."""

    loss: list[float] = field(default_factory=list)
    policy_loss: list[float] = field(default_factory=list)
    value_loss: list[float] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


# ---- data ------------------------------------------------------------------------------------
def _take(states: GridState, rows: np.ndarray) -> GridState:
    return GridState(**{k: v[rows] for k, v in vars(states).items()})


def _concat(parts: list[GridState]) -> GridState:
    return GridState(**{k: np.concatenate([vars(p)[k] for p in parts]) for k in vars(parts[0])})


def _start_states(model: GridModel, states: GridState, cfg: PretrainConfig,
                  rng: np.random.Generator) -> GridState:
    b = len(states)
    load = rng.random(b) < cfg.p_loaded
    late = rng.random(b) < cfg.p_late_start
    t = np.where(late, rng.integers(0, model.config.horizon_steps, b), 0)
    return model.replace(states, load=load, t=t.astype(np.int64))


def sample_training_states(layout: Layout, cfg: PretrainConfig, rng: np.random.Generator
                           ) -> tuple[GridModel, GridState, np.ndarray, np.ndarray]:
    """Situations played by the epsilon-greedy expert; every visited non-terminal state.

    Returns:
        (model, states [N], kind [N] int64, situation [N] int64).
    """
    kinds = [cfg.kinds[i % len(cfg.kinds)] for i in range(cfg.n_situations)]
    model, states = sample_situations(layout, kinds, rng, config=cfg.model_config(),
                                      n_others=cfg.n_others, n_blocks=cfg.n_blocks)
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


def value_targets(expert: ShortestPathExpert, states: GridState, rng: np.random.Generator,
                  cfg: PretrainConfig) -> np.ndarray:
    """[N] float64 expert returns, averaged over plays and, while empty, over stations.

    An empty robot's observation does not show its order's station (the goal vector
    points at the pick cell), so the target of an empty state is its mean return over
    every station the order could have (uniform, as orders are drawn): the regression
    optimum is unchanged and the target loses the unobservable part of its variance.
    """
    model = expert.model
    n_st, k = len(model.station_cells), cfg.value_rollouts
    reps = np.where(states.load, 1, n_st) * k  # [N] plays per state
    rows = np.repeat(np.arange(len(states)), reps)
    plays = _take(states, rows)
    offset = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)  # play index
    station = np.where(plays.load, plays.station, model.station_cells[(offset // k) % n_st])
    plays = model.replace(plays, station=station)
    table = open_world_values(model, cfg.discount)
    ret = expert_returns(expert, plays, rng, discount=cfg.discount, continuation=table)
    return np.bincount(rows, weights=ret, minlength=len(states)) / reps


def make_dataset(layout: Layout, cfg: PretrainConfig, rng: np.random.Generator) -> PVDataset:
    """Seeded states with expert policy and value targets (see the module docstring)."""
    model, states, kind, sit = sample_training_states(layout, cfg, rng)
    expert = ShortestPathExpert(model)
    policy = expert.policy_target(states)
    value = value_targets(expert, states, rng, cfg)
    obs = model.encode(states)
    return PVDataset({n: obs[n].astype(np.float32) for n in OBS_KEYS}, policy.astype(np.float32),
                     value.astype(np.float32), kind, sit)


def split_holdout(data: PVDataset, cfg: PretrainConfig) -> tuple[PVDataset, PVDataset]:
    """(train, validation) split by situation (the last ``holdout`` fraction validates)."""
    cut = int(round(cfg.n_situations * (1.0 - cfg.holdout)))
    val = data.situation >= cut
    return data.take(np.flatnonzero(~val)), data.take(np.flatnonzero(val))


# ---- loss and training -------------------------------------------------------------------------
def to_torch(obs: dict[str, np.ndarray], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Numpy observation dict -> float32 tensors on ``device``."""
    return {k: torch.as_tensor(np.asarray(v, np.float32), device=device) for k, v in obs.items()}


def pv_loss(net: PolicyValueNet, obs: dict[str, torch.Tensor], policy: torch.Tensor,
            value: torch.Tensor, *, value_weight: float = 1.0
            ) -> tuple[torch.Tensor, dict[str, float]]:
    """AlphaZero loss: cross-entropy to the policy target + weighted value MSE.

    Args:
        net: the network.
        obs: encoded batch (with "action_mask": illegal logits are masked, and the target
            is zero there, so they contribute nothing).
        policy: [B, A] target distribution.
        value: [B] target return.
        value_weight: weight of the MSE.

    Returns:
        (scalar loss, {"loss", "policy_loss", "value_loss"} as floats).
    """
    out = net(obs)
    logp = F.log_softmax(out.logits, dim=-1)  # [B, A]
    ce = -(policy * logp).sum(-1).mean()
    mse = F.mse_loss(out.value, value)
    loss = ce + value_weight * mse
    return loss, {"loss": loss.item(), "policy_loss": ce.item(), "value_loss": mse.item()}


def _lr(step: int, cfg: PretrainConfig) -> float:
    warm = max(1, min(100, cfg.steps // 10))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def train_policy_value(net: PolicyValueNet, train: PVDataset, cfg: PretrainConfig,
                       generator: torch.Generator, *, val: PVDataset | None = None,
                       log_every: int = 0) -> TrainLog:
    """Fits ``net`` to the targets in ``train`` (in place).

    Args:
        net: the network (trained in train mode, left in eval mode).
        train: training samples.
        cfg: optimisation settings (steps, batch_size, lr, weight_decay, value_weight).
        generator: draws the minibatches.
        val: optional validation samples; their metrics land in ``TrainLog.val``.
        log_every: print a progress line every this many steps (0 = silent).

    Returns:
        The :class:`TrainLog`.
    """
    t0 = time.perf_counter()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    obs = to_torch(train.obs)
    pol, val_t = torch.as_tensor(train.policy), torch.as_tensor(train.value)
    n = len(train)
    log = TrainLog()
    perm, pos = torch.randperm(n, generator=generator), 0
    net.train()
    for step in range(cfg.steps):
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=generator), 0
        idx = perm[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        loss, m = pv_loss(net, {k: v[idx] for k, v in obs.items()}, pol[idx], val_t[idx],
                          value_weight=cfg.value_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        log.loss.append(m["loss"])
        log.policy_loss.append(m["policy_loss"])
        log.value_loss.append(m["value_loss"])
        if log_every and (step + 1) % log_every == 0:
            k = log_every
            print(f"step {step + 1:5d}  loss {np.mean(log.loss[-k:]):.4f}  "
                  f"ce {np.mean(log.policy_loss[-k:]):.4f}  "
                  f"mse {np.mean(log.value_loss[-k:]):.4f}  {time.perf_counter() - t0:.0f}s",
                  flush=True)
    net.eval()
    if val is not None and len(val):
        log.val = evaluate_dataset(net, val, value_weight=cfg.value_weight)
    log.wall_s = time.perf_counter() - t0
    return log


@torch.no_grad()
def evaluate_dataset(net: PolicyValueNet, data: PVDataset, *, value_weight: float = 1.0,
                     chunk: int = 4096) -> dict[str, float]:
    """Loss terms, policy agreement (argmax in the target's support) and value RMSE."""
    net.eval()
    ce = mse = agree = 0.0
    for s in range(0, len(data), chunk):
        part = data.take(np.arange(s, min(s + chunk, len(data))))
        out = net(to_torch(part.obs))
        pol = torch.as_tensor(part.policy)
        ce += float(-(pol * F.log_softmax(out.logits, -1)).sum())
        mse += float(((out.value - torch.as_tensor(part.value)) ** 2).sum())
        best = out.logits.argmax(-1)
        agree += float((pol.gather(1, best[:, None]) > 0).sum())
    n = max(1, len(data))
    return {"policy_loss": ce / n, "value_loss": mse / n, "loss": (ce + value_weight * mse) / n,
            "value_rmse": math.sqrt(mse / n), "agreement": agree / n}


@torch.no_grad()
def action_agreement(net: PolicyValueNet, model: GridModel, states: GridState) -> float:
    """Fraction of states where the network's greedy action is a shortest-path action.

    The reference is :meth:`ShortestPathExpert.optimal_actions` (ties all count).
    """
    best = ShortestPathExpert(model).optimal_actions(states)
    net.eval()
    greedy = net(to_torch(model.encode(states))).logits.argmax(-1).numpy()
    return float(best[np.arange(len(greedy)), greedy].mean())


def pretrain(layout: Layout, cfg: PretrainConfig, *, net_config: PolicyValueConfig | None = None,
             log_every: int = 0) -> tuple[PolicyValueNet, TrainLog, dict[str, object]]:
    """Generates the data and trains a fresh network, all from ``cfg.seed``.

    Returns:
        (trained net in eval mode, training log, info dict for the checkpoint metadata).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    data = make_dataset(layout, cfg, rng)
    data_s = time.perf_counter() - t0
    train, val = split_holdout(data, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = PolicyValueNet(net_config, generator=gen)
    log = train_policy_value(net, train, cfg, gen, val=val, log_every=log_every)
    info: dict[str, object] = {
        "stage": "pretrain", "seed": cfg.seed, "n_samples": len(data), "n_train": len(train),
        "data_wall_s": round(data_s, 1), "train_wall_s": round(log.wall_s, 1),
        "value_target": "discounted return of the greedy shortest-path expert played in the "
                        f"grid model (discount {cfg.discount}, {cfg.value_rollouts} plays; "
                        "later orders: exact open-warehouse expectation)",
        "grid_model": {"horizon_steps": cfg.horizon_steps,
                       "terminate_on_delivery": cfg.terminate_on_delivery},
        "policy_target": "uniform over shortest-path expert actions",
        "final_train_loss": float(np.mean(log.loss[-50:])) if log.loss else None,
        "val": log.val,
    }
    return net, log, info
