"""Supervised pre-training of :class:`PolicyValueNet` on the grid model (AlphaZero-style targets).

The data (:mod:`learning.grid_data`): seeded grid-model states with the shortest-path
expert's policy (uniform over its optimal actions) and value (its discounted return played
in the model), plus sibling groups (every legal action of a state with the true
``Q = r + discount * V(next)``).

The loss (:func:`pv_loss`, :func:`group_loss`)::

    CE(policy target, logits) + value_weight * MSE(value target, value)
      + group_weight * mean_a ((Qnet(a) - mean Qnet) - (Q(a) - mean Q))**2 / group_scale**2

The last term trains the value *differences* between siblings, the quantity a search
with few simulations compares (true gaps ~0.02 against values spanning ~1). AdamW,
warm-up then cosine learning rate, gradient clipping at norm 1. Every random draw comes
from ``PretrainConfig.seed`` (data, initialisation, minibatches), so the same config
gives bit-identical weights on one thread.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from learning.expert import ShortestPathExpert
from learning.grid_data import GridDataConfig, GroupDataset, PVDataset, holdout_mask, make_datasets
from learning.network import PolicyValueConfig, PolicyValueNet
from planning.grid_model import GridModel, GridState
from sim.layout import Layout

__all__ = [
    "PretrainConfig",
    "TrainLog",
    "action_agreement",
    "evaluate_dataset",
    "group_loss",
    "pretrain",
    "pv_loss",
    "to_torch",
    "train_policy_value",
]


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training settings (validated; ValueError names the field).

    Attributes:
        seed: the only source of randomness (data, initialisation, minibatches).
        data: what data to generate.
        steps: optimiser steps.
        batch_size: states per step.
        group_batch: sibling groups per step (0 = no group loss).
        lr: peak learning rate (100-step warm-up, cosine decay to ``lr / 20``).
        weight_decay: AdamW weight decay.
        value_weight: weight of the value MSE.
        group_weight: weight of the sibling-Q loss.
        group_scale: Q-difference unit of the sibling loss (reward units).
    """

    seed: int = 0
    data: GridDataConfig = field(default_factory=GridDataConfig)
    steps: int = 4000
    batch_size: int = 256
    group_batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    value_weight: float = 10.0
    group_weight: float = 0.1
    group_scale: float = 0.02

    def __post_init__(self) -> None:
        checks = [
            ("steps", self.steps >= 0, "integer >= 0"),
            ("batch_size", self.batch_size >= 1, "integer >= 1"),
            ("group_batch", self.group_batch >= 0, "integer >= 0"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("value_weight", self.value_weight >= 0, ">= 0"),
            ("group_weight", self.group_weight >= 0, ">= 0"),
            ("group_scale", self.group_scale > 0, "> 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"pretrain.{name}: {getattr(self, name)!r}; allowed {allowed}")


@dataclass
class TrainLog:
    """Per-step training curves and the final validation metrics."""

    loss: list[float] = field(default_factory=list)
    policy_loss: list[float] = field(default_factory=list)
    value_loss: list[float] = field(default_factory=list)
    group_loss: list[float] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


# ---- losses ----------------------------------------------------------------------------------
def to_torch(
    obs: dict[str, np.ndarray], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Numpy observation dict -> float32 tensors on ``device``."""
    return {k: torch.as_tensor(np.asarray(v, np.float32), device=device) for k, v in obs.items()}


def pv_loss(
    net: PolicyValueNet,
    obs: dict[str, torch.Tensor],
    policy: torch.Tensor,
    value: torch.Tensor,
    *,
    value_weight: float = 1.0,
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
        (scalar loss, {"policy_loss", "value_loss"} as floats).
    """
    out = net(obs)
    ce = -(policy * F.log_softmax(out.logits, dim=-1)).sum(-1).mean()
    mse = F.mse_loss(out.value, value)
    return ce + value_weight * mse, {"policy_loss": ce.item(), "value_loss": mse.item()}


def group_loss(
    net: PolicyValueNet,
    obs: dict[str, torch.Tensor],
    legal: torch.Tensor,
    has_next: torch.Tensor,
    reward: torch.Tensor,
    q: torch.Tensor,
    *,
    discount: float,
    scale: float,
) -> torch.Tensor:
    """Squared error of centred sibling Q values, in units of ``scale``.

    ``Qnet(a) = reward(a) + discount * V_net(next(a))`` (no value after a terminal step);
    both ``Qnet`` and the target ``q`` are centred on their mean over the legal actions,
    so only the differences between siblings are trained.

    Args:
        net: the network.
        obs: next-state observations with leading dims [G, A].
        legal, has_next: [G, A] bool.
        reward, q: [G, A] float.
        discount: per-step discount.
        scale: Q-difference unit (reward units).

    Returns:
        Scalar loss (0 when no group has two legal actions).
    """
    g, a = legal.shape
    rows = has_next.flatten().nonzero()[:, 0]
    flat = {k: v.flatten(0, 1)[rows] for k, v in obs.items()}
    v = torch.zeros(g * a, dtype=reward.dtype)
    v = v.index_put((rows,), net(flat).value) if len(rows) else v
    qn = reward + discount * v.view(g, a)  # [G, A]
    w = legal.to(reward.dtype)
    n = w.sum(1, keepdim=True).clamp(min=1.0)
    err = (qn - (qn * w).sum(1, keepdim=True) / n) - (q - (q * w).sum(1, keepdim=True) / n)
    return ((err / scale) ** 2 * w).sum() / w.sum().clamp(min=1.0)


# ---- training ----------------------------------------------------------------------------------
def _lr(step: int, cfg: PretrainConfig) -> float:
    warm = max(1, min(100, cfg.steps // 10))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))


class _Batches:
    """Endless shuffled minibatches of row indices from ``generator``."""

    def __init__(self, n: int, size: int, generator: torch.Generator) -> None:
        self.n, self.size, self.gen = n, min(size, n), generator
        self.perm, self.pos = torch.randperm(n, generator=generator), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        self.pos += self.size
        return self.perm[self.pos - self.size : self.pos]


def train_policy_value(
    net: PolicyValueNet,
    train: PVDataset,
    cfg: PretrainConfig,
    generator: torch.Generator,
    *,
    groups: GroupDataset | None = None,
    val: PVDataset | None = None,
    log_every: int = 0,
) -> TrainLog:
    """Fits ``net`` to the targets (in place).

    Args:
        net: the network (trained in train mode, left in eval mode).
        train: training states.
        cfg: optimisation settings.
        generator: draws the minibatches.
        groups: optional sibling groups (used when ``cfg.group_batch > 0``).
        val: optional validation states; their metrics land in ``TrainLog.val``.
        log_every: print a progress line every this many steps (0 = silent).

    Returns:
        The :class:`TrainLog`.
    """
    t0 = time.perf_counter()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    obs, pol, val_t = (
        to_torch(train.obs),
        torch.as_tensor(train.policy),
        torch.as_tensor(train.value),
    )
    batches = _Batches(len(train), cfg.batch_size, generator)
    use_groups = groups is not None and len(groups) > 0 and cfg.group_batch > 0
    if use_groups:
        gt = (
            to_torch(groups.obs),
            torch.as_tensor(groups.legal),
            torch.as_tensor(groups.has_next),
            torch.as_tensor(groups.reward),
            torch.as_tensor(groups.q),
        )
        gbatches = _Batches(len(groups), cfg.group_batch, generator)
    log = TrainLog()
    net.train()
    for step in range(cfg.steps):
        for pg in opt.param_groups:
            pg["lr"] = _lr(step, cfg)
        idx = batches.next()
        loss, m = pv_loss(
            net,
            {k: v[idx] for k, v in obs.items()},
            pol[idx],
            val_t[idx],
            value_weight=cfg.value_weight,
        )
        gl = torch.zeros(())
        if use_groups:
            gi = gbatches.next()
            gl = group_loss(
                net,
                {k: v[gi] for k, v in gt[0].items()},
                *(x[gi] for x in gt[1:]),
                discount=cfg.data.discount,
                scale=cfg.group_scale,
            )
            loss = loss + cfg.group_weight * gl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        log.loss.append(loss.item())
        log.policy_loss.append(m["policy_loss"])
        log.value_loss.append(m["value_loss"])
        log.group_loss.append(gl.item())
        if log_every and (step + 1) % log_every == 0:
            k = log_every
            print(
                f"step {step + 1:5d}  loss {np.mean(log.loss[-k:]):.4f}  "
                f"ce {np.mean(log.policy_loss[-k:]):.4f}  "
                f"mse {np.mean(log.value_loss[-k:]):.5f}  "
                f"group {np.mean(log.group_loss[-k:]):.3f}  {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
    net.eval()
    if val is not None and len(val):
        log.val = evaluate_dataset(net, val, value_weight=cfg.value_weight)
    log.wall_s = time.perf_counter() - t0
    return log


@torch.no_grad()
def evaluate_dataset(
    net: PolicyValueNet, data: PVDataset, *, value_weight: float = 1.0, chunk: int = 4096
) -> dict[str, float]:
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
    return {
        "policy_loss": ce / n,
        "value_loss": mse / n,
        "loss": (ce + value_weight * mse) / n,
        "value_rmse": math.sqrt(mse / n),
        "agreement": agree / n,
    }


@torch.no_grad()
def action_agreement(net: PolicyValueNet, model: GridModel, states: GridState) -> float:
    """Fraction of states where the network's greedy action is a shortest-path action.

    The reference is :meth:`ShortestPathExpert.optimal_actions` (ties all count).
    """
    best = ShortestPathExpert(model).optimal_actions(states)
    net.eval()
    greedy = net(to_torch(model.encode(states))).logits.argmax(-1).numpy()
    return float(best[np.arange(len(greedy)), greedy].mean())


def pretrain(
    layout: Layout,
    cfg: PretrainConfig,
    *,
    net_config: PolicyValueConfig | None = None,
    log_every: int = 0,
) -> tuple[PolicyValueNet, TrainLog, dict[str, object]]:
    """Generates the data and trains a fresh network, all from ``cfg.seed``.

    Returns:
        (trained net in eval mode, training log, info dict for the checkpoint metadata).
    """
    t0 = time.perf_counter()
    data, groups = make_datasets(layout, cfg.data, np.random.default_rng(cfg.seed))
    data_s = time.perf_counter() - t0
    is_val = holdout_mask(data.situation, cfg.data)
    train, val = data.take(np.flatnonzero(~is_val)), data.take(np.flatnonzero(is_val))
    groups = groups.take(np.flatnonzero(~holdout_mask(groups.situation, cfg.data)))
    gen = torch.Generator().manual_seed(cfg.seed)
    net = PolicyValueNet(net_config, generator=gen)
    log = train_policy_value(net, train, cfg, gen, groups=groups, val=val, log_every=log_every)
    info: dict[str, object] = {
        "stage": "pretrain",
        "config": asdict(cfg),
        "n_samples": len(data),
        "n_train": len(train),
        "n_groups": len(groups),
        "data_wall_s": round(data_s, 1),
        "train_wall_s": round(log.wall_s, 1),
        "value_target": "discounted return of the greedy shortest-path expert played in the "
        "grid model (while empty: for the station farthest from the pick)",
        "policy_target": "uniform over the shortest-path expert's optimal actions",
        "final_train_loss": float(np.mean(log.loss[-50:])) if log.loss else None,
        "val": log.val,
    }
    return net, log, info
