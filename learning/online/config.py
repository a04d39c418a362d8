"""Settings of the online learner (one frozen, validated record; the YAML mirrors it).

``agent.config.LearningSection.learner`` *is* this dataclass, so every key of
``configs/learning/*.yaml`` under ``learner:`` is a field here and drives the code named in
its description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from planning.situations import SITUATION_KINDS

__all__ = ["DEFAULT_LORA_TARGETS", "REHEARSAL_VALUES", "WORKERS", "OnlineConfig", "check_worker"]

#: where a background learner runs (:func:`learning.online.make_learner`): "process" = a
#: spawned worker process (training and the shadow gate never share the control loop's
#: interpreter lock), "thread" = a daemon thread of the host process.
WORKERS: tuple[str, ...] = ("process", "thread")
#: where the rehearsal rows' value targets come from (``OnlineConfig.rehearsal_value``)
RehearsalValue = Literal["production", "expert"]
REHEARSAL_VALUES: tuple[str, ...] = get_args(RehearsalValue)


def check_worker(worker: object, field: str = "online.worker") -> str:
    """``worker`` if it is one of :data:`WORKERS`; else a one-line ValueError naming ``field``."""
    if worker not in WORKERS:
        raise ValueError(f"{field}: {worker!r}; allowed {', '.join(WORKERS)}")
    return str(worker)


#: fnmatch patterns over ``PolicyValueNet.named_modules()``: the fusion blocks' attention
#: and MLP projections and both heads (only ``nn.Linear`` modules are adapted).
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "encoder.blocks.*.cross_attn.*",
    "encoder.blocks.*.mlp.*",
    "policy_hidden",
    "policy_head",
    "value_hidden",
    "value_head",
)


@dataclass(frozen=True)
class OnlineConfig:
    """What the online learner does (validated; ValueError names the field).

    Attributes:
        mode: "lora" (train low-rank adapters on ``lora_targets``, base frozen) or "full"
            (train every weight with an EWC penalty anchored at the production weights).
        lora_rank: adapter rank r.
        lora_alpha: adapter scale numerator (delta W = alpha / r * B @ A).
        lora_targets: fnmatch patterns of the adapted ``nn.Linear`` module names.
        ewc_lambda: weight of ``sum_i F_i (theta_i - theta*_i)**2 / 2`` (mode "full").
        fisher_samples: replay samples the diagonal Fisher is estimated from.
        fisher_batch: micro-batch of one Fisher gradient (empirical Fisher).
        recent_size: transitions in the recent window (FIFO).
        reservoir_size: transitions in the reservoir of older data (uniform over all
            transitions evicted from the recent window, seeded).
        replay_fraction: share of every minibatch drawn from the reservoir (0 = no replay).
        rehearsal_situations: grid-model situations of every layout the robots work on
            (the starting one, and each one :meth:`OnlineLearner.set_layout` announces)
            played by the shortest-path expert (``learning.grid_data``, the pre-training
            targets) into a rehearsal store: the new map is rehearsed in the planner's own
            world model, the earlier ones stay in the store's reservoir (0 = off).
        rehearsal_fraction: share of every minibatch drawn from the rehearsal store (half
            of it from the current layout, half from earlier ones once there are any).
        rehearsal_value: the value target of the rehearsal rows: ``production`` (the
            production network's own value of each state when the layout is rehearsed: an
            anchor that keeps the value head's meaning) or ``expert`` (the expert's return
            to the first delivery, the pre-training target: right only for a network trained
            on it, e.g. grid_pv; rl_pv's value is the continuing fleet return, ~2.5x larger,
            and the expert's targets made every candidate worse on the gate, see docs/ONLINE.md).
        batch_size: transitions per optimiser step.
        steps_per_update: optimiser steps per candidate (bounds one update).
        lr: Adam learning rate.
        grad_clip: gradient-norm clip per step.
        max_rel_change: a candidate whose weights moved more than this fraction of the
            production weights' L2 norm is discarded (bounds one update).
        min_samples: transitions stored before the first update.
        min_new_samples: new transitions since the last update before the next one.
        update_interval_s: wall seconds between two updates at least (rate limit; the
            background thread only).
        queue_size: transitions buffered between ``observe`` and the learner thread; more
            are dropped (counted), ``observe`` never blocks.
        discount: per-step discount of the TD value target.
        value_weight: weight of the value MSE.
        adv_temperature: beta of the advantage weights ``exp(A / beta)`` of the policy
            loss on transitions without a search policy (reward units).
        adv_weight_max: clip of those weights.
        gate_situations: grid-model situations per gate suite (recent and held-out).
        gate_horizon: steps per gate episode at most (episodes end at the first delivery).
        gate_simulations: MCTS simulations per gate decision (0 = greedy policy).
        gate_margin: a candidate is swapped in only if its mean return on each suite is
            >= production's - margin (reward units; the mean of the per-situation paired
            differences).
        gate_value_margin: ... and only if its calibrated value RMSE (both networks on the
            same visited gate states, each value affinely fitted to the returns:
            ``learning.online.gate.ValueCheck``) is <= production's + this (reward units).
        gate_z: ... and only if on the recent suite its mean return gain (or its value-MSE
            reduction) exceeds this many standard errors of the per-situation paired
            difference: a candidate that differs from production only by noise is not
            swapped in.
        gate_min_value_gain: a value-MSE reduction counts as a gain only from this size on
            (calibrated MSE, reward units squared), beyond its ``gate_z`` standard errors:
            a shift run swapped in a candidate on a 0.0012 +- 0.0006 reduction (0.3% of the
            MSE, no return gain) and the live fleet did not gain from it.
        gate_require_gain: False drops that last condition (not worse is enough).
        gate_kinds: situation kinds of the gate suites.
        kpi_keys: KPIs watched after a swap; a leading "-" means lower is better.
        kpi_window: KPI reports averaged before and after a swap.
        kpi_drop: relative KPI drop after a swap that rolls back to the last good weights.
        seed: seeds the adapters, the replay store, minibatches and gate situations.
    """

    mode: Literal["lora", "full"] = "lora"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    ewc_lambda: float = 100.0
    fisher_samples: int = 256
    fisher_batch: int = 8
    recent_size: int = 4096
    reservoir_size: int = 16384
    replay_fraction: float = 0.5
    rehearsal_situations: int = 0
    rehearsal_fraction: float = 0.25
    rehearsal_value: RehearsalValue = "production"
    batch_size: int = 64
    steps_per_update: int = 50
    lr: float = 1e-3
    grad_clip: float = 1.0
    max_rel_change: float = 0.05
    min_samples: int = 256
    min_new_samples: int = 128
    update_interval_s: float = 5.0
    queue_size: int = 4096
    discount: float = 0.99
    value_weight: float = 1.0
    adv_temperature: float = 0.05
    adv_weight_max: float = 20.0
    gate_situations: int = 24
    gate_horizon: int = 60
    gate_simulations: int = 0
    gate_margin: float = 0.02
    gate_value_margin: float = 0.02
    gate_z: float = 2.0
    gate_min_value_gain: float = 0.01
    gate_require_gain: bool = True
    gate_kinds: tuple[str, ...] = SITUATION_KINDS
    kpi_keys: tuple[str, ...] = ("completion_rate",)
    kpi_window: int = 3
    kpi_drop: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        pos_int = "integer >= 1"
        checks = [
            ("mode", self.mode in ("lora", "full"), "lora, full"),
            ("lora_rank", self.lora_rank >= 1, pos_int),
            ("lora_alpha", self.lora_alpha > 0, "> 0"),
            ("lora_targets", len(self.lora_targets) > 0, "a non-empty list of patterns"),
            ("ewc_lambda", self.ewc_lambda >= 0, ">= 0"),
            ("fisher_samples", self.fisher_samples >= 1, pos_int),
            ("fisher_batch", self.fisher_batch >= 1, pos_int),
            ("recent_size", self.recent_size >= 1, pos_int),
            ("reservoir_size", self.reservoir_size >= 0, "integer >= 0"),
            ("replay_fraction", 0.0 <= self.replay_fraction <= 1.0, "in [0, 1]"),
            ("rehearsal_situations", self.rehearsal_situations >= 0, "integer >= 0"),
            ("rehearsal_fraction", 0.0 <= self.rehearsal_fraction <= 1.0, "in [0, 1]"),
            ("rehearsal_value", self.rehearsal_value in REHEARSAL_VALUES, ", ".join(REHEARSAL_VALUES)),
            ("batch_size", self.batch_size >= 1, pos_int),
            ("steps_per_update", self.steps_per_update >= 1, pos_int),
            ("lr", self.lr > 0, "> 0"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("max_rel_change", self.max_rel_change > 0, "> 0"),
            ("min_samples", self.min_samples >= 1, pos_int),
            ("min_new_samples", self.min_new_samples >= 1, pos_int),
            ("update_interval_s", self.update_interval_s >= 0, ">= 0 s"),
            ("queue_size", self.queue_size >= 1, pos_int),
            ("discount", 0.0 < self.discount <= 1.0, "in (0, 1]"),
            ("value_weight", self.value_weight >= 0, ">= 0"),
            ("adv_temperature", self.adv_temperature > 0, "> 0"),
            ("adv_weight_max", self.adv_weight_max > 0, "> 0"),
            ("gate_situations", self.gate_situations >= 1, pos_int),
            ("gate_horizon", self.gate_horizon >= 1, pos_int),
            ("gate_simulations", self.gate_simulations >= 0, "integer >= 0"),
            ("gate_margin", self.gate_margin >= 0, ">= 0"),
            ("gate_value_margin", self.gate_value_margin >= 0, ">= 0"),
            ("gate_z", self.gate_z >= 0, ">= 0"),
            ("gate_min_value_gain", self.gate_min_value_gain >= 0, ">= 0"),
            (
                "gate_kinds",
                len(self.gate_kinds) > 0 and set(self.gate_kinds) <= set(SITUATION_KINDS),
                f"a non-empty subset of {', '.join(SITUATION_KINDS)}",
            ),
            ("kpi_keys", all(k.lstrip("-") for k in self.kpi_keys), "KPI names"),
            ("kpi_window", self.kpi_window >= 1, pos_int),
            ("kpi_drop", self.kpi_drop > 0, "> 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"online.{name}: {getattr(self, name)!r}; allowed {allowed}")
        if self.replay_fraction > 0 and self.reservoir_size == 0:
            raise ValueError(
                f"online.reservoir_size: 0; allowed >= 1 with replay_fraction="
                f"{self.replay_fraction} (or replay_fraction 0)"
            )
