"""The online learner: replay store, background fine-tuning, shadow gate, KPI rollback.

Threads: the host (control loop) calls :meth:`OnlineLearner.observe` (appends to a
bounded deque, never blocks, never touches torch), reads :attr:`OnlineLearner.evaluator`
(one attribute read: swaps are atomic) and calls :meth:`OnlineLearner.report_kpis`
(cheap; a rollback is a pointer swap under a lock). Everything else (replay, training,
shadow evaluation) runs on the learner's daemon thread, or in the caller's thread via
:meth:`OnlineLearner.step` (``background=False``: reproducible, used by tests and evals).

One update (:meth:`step`): drain the queue into the replay store; if enough new data,
copy the production state (LoRA adapters, or all weights + an EWC anchor), take
``steps_per_update`` Adam steps on minibatches mixing recent and reservoir data (a step
whose loss or gradient is NaN/inf is skipped and counted), discard the candidate if its
weights moved more than ``max_rel_change``, shadow-evaluate it (:class:`ShadowGate`) and
swap it in only if it is not worse on the recent and the held-out suites. Any exception in
the thread is logged as a crash and stops learning; production keeps the last good weights.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learning.checkpoint import load_policy_value, save_policy_value
from learning.evaluator import NetworkEvaluator
from learning.grid_data import GridDataConfig, make_datasets
from learning.network import PolicyValueNet
from learning.online.config import OnlineConfig
from learning.online.ewc import EWCState, diagonal_fisher, ewc_penalty, load_ewc, save_ewc
from learning.online.gate import KpiMonitor, ShadowGate, SituationSuite
from learning.online.lora import (
    adapter_state,
    apply_lora,
    load_adapter_state,
    load_adapters,
    merged_copy,
    save_adapters,
)
from learning.online.loss import online_loss, to_torch_batch
from learning.online.replay import ReplayStore, Transition, concat_batches
from planning.grid_model import GridModelConfig
from sim.layout import Layout

__all__ = ["OnlineLearner", "Version", "weights_digest"]


def checked_transition(
    stats: dict[str, int],
    obs: Mapping[str, np.ndarray],
    action: int,
    reward: float,
    next_obs: Mapping[str, np.ndarray],
    done: bool,
    search_policy: np.ndarray | None,
    search_value: float | None,
) -> Transition | None:
    """``observe``'s input check and copy, shared by the thread and process learners: counts
    ``observed``, and ``rejected_inputs`` (returning None) for a non-finite reward or value;
    otherwise a float32 copy of the arrays as a :class:`Transition`."""
    stats["observed"] += 1
    if not math.isfinite(reward) or (search_value is not None and not math.isfinite(search_value)):
        stats["rejected_inputs"] += 1
        return None
    cp = lambda d: {k: np.array(v, np.float32) for k, v in d.items()}  # noqa: E731
    pol = None if search_policy is None else np.array(search_policy, np.float32)
    val = None if search_value is None else float(search_value)
    return Transition(cp(obs), int(action), float(reward), cp(next_obs), bool(done), pol, val)


@dataclass(frozen=True)
class Version:
    """One production version.

    Attributes:
        id: 0 = the weights the learner started from, +1 per swap.
        evaluator: what the planner calls.
        state: what training restarts from (LoRA: adapter tensors; full: state dict).
    """

    id: int
    evaluator: NetworkEvaluator
    state: dict[str, torch.Tensor]

    @property
    def net(self) -> PolicyValueNet:
        """The production network (eval mode)."""
        return self.evaluator.net


def weights_digest(net: torch.nn.Module) -> str:
    """sha256 of the state dict (names + bytes): identifies a set of weights."""
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rel_change(a: PolicyValueNet, b: PolicyValueNet) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    num = sum(float(((sa[k] - sb[k]) ** 2).sum()) for k in sa if sa[k].is_floating_point())
    den = sum(float((sb[k] ** 2).sum()) for k in sb if sb[k].is_floating_point())
    return math.sqrt(num / max(den, 1e-30))


class OnlineLearner:
    """Learns while the robots run; the host plans with :attr:`evaluator`.

    Args:
        cfg: the settings.
        evaluator: the production evaluator to start from (its network becomes the base).
        layout: the layout the robots work in (gate suites are sampled on it).
        model_config: grid-model settings of the gate (rewards, crop; episodes end at the
            first delivery, ``horizon_steps = cfg.gate_horizon``).
        background: start the learner thread (False: call :meth:`step` yourself).
        gate_search: further ``MCTSConfig`` fields of the gate's search when
            ``cfg.gate_simulations`` > 0 (the host planner's rule, depth, ...), so the gate
            plays the way production plans.

    Example:
        >>> learner = OnlineLearner(OnlineConfig(), load_network_evaluator(), layout=layout)
        >>> learner.observe(obs, action, reward, next_obs, done, search_policy=visits)
        >>> logits, values = learner.evaluator.evaluate(encoded)
        >>> learner.report_kpis({"completion_rate": 0.93})
        >>> learner.close(); learner.log[-1]["event"]
    """

    def __init__(
        self,
        cfg: OnlineConfig,
        evaluator: NetworkEvaluator,
        *,
        layout: Layout,
        model_config: GridModelConfig | None = None,
        background: bool = True,
        gate_search: Mapping[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self._device = str(evaluator.device)
        base = copy.deepcopy(evaluator.net).cpu().eval()
        self._base = base
        self._base_digest = weights_digest(base)
        self._gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self._train = copy.deepcopy(base)
        if cfg.mode == "lora":
            self.adapted = apply_lora(
                self._train, cfg.lora_targets, rank=cfg.lora_rank, alpha=cfg.lora_alpha,
                generator=self._gen,
            )
            state0 = adapter_state(self._train)
        else:
            self.adapted = []
            state0 = {k: v.clone() for k, v in base.state_dict().items()}
        self._prod = Version(0, evaluator, state0)
        self._last_good = self._prod
        # the training branch: what the last candidate trained from ``_branch_base``
        # reached. A rejected candidate's progress is kept (the next update continues
        # from it) so learning accumulates across updates the gate does not yet accept;
        # it is dropped on a swap (production is the branch then), a discard (too large,
        # non-finite) and a rollback.
        self._branch: dict[str, torch.Tensor] | None = None
        self._branch_base = -1
        self._ewc: EWCState | None = None
        self._ewc_version = -1
        self.store = ReplayStore(
            base.config.obs_spec(), base.config.num_actions, cfg.recent_size,
            cfg.reservoir_size, np.random.default_rng(cfg.seed),
        )
        # rehearsal (cfg.rehearsal_situations > 0): expert situations of each layout in the
        # grid model; the current layout's in the recent part, earlier ones in the reservoir
        n_reh = cfg.rehearsal_situations * GridDataConfig().record_steps
        self.rehearsal = (
            ReplayStore(base.config.obs_spec(), base.config.num_actions, n_reh, n_reh,
                        np.random.default_rng(cfg.seed + 3))
            if n_reh else None
        )
        self._rehearse_pending: list[Layout] = [layout] if n_reh else []
        self._model_config = model_config
        mk = lambda name, lay, seed: SituationSuite.sample(  # noqa: E731
            name, lay, n=cfg.gate_situations, seed=seed, horizon=cfg.gate_horizon,
            kinds=cfg.gate_kinds, model_config=model_config,
        )
        self._make_suite = mk
        self.gate = ShadowGate(
            mk("recent", layout, cfg.seed + 1), mk("heldout", layout, cfg.seed),
            margin=cfg.gate_margin, value_margin=cfg.gate_value_margin,
            simulations=cfg.gate_simulations, discount=cfg.discount,
            z=cfg.gate_z, require_gain=cfg.gate_require_gain, search=gate_search,
            min_value_gain=cfg.gate_min_value_gain,
        )
        self.monitor = KpiMonitor(cfg.kpi_keys, cfg.kpi_window, cfg.kpi_drop)
        self._queue: deque[Transition] = deque()
        self._lock = threading.Lock()
        self._pending_layout: Layout | None = None
        self._n_layouts = 0
        self._new_since_update = 0
        self._last_update_t = -math.inf
        self.log: list[dict[str, Any]] = []
        self.stats: dict[str, int] = dict.fromkeys(
            ("observed", "dropped", "rejected_inputs", "bad_inputs", "updates", "steps",
             "skipped_nonfinite", "swaps", "rejections", "rollbacks", "crashes"), 0,
        )
        self.crashed = False
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._busy = threading.Lock()  # held by the thread during one update
        self._thread: threading.Thread | None = None
        #: where updates run: "thread" (the daemon thread) or "inline" (:meth:`step`)
        self.worker = "thread" if background else "inline"
        if background:
            self._thread = threading.Thread(target=self._run, name="online-learner", daemon=True)
            self._thread.start()

    # ---- host-facing ---------------------------------------------------------------------
    @property
    def evaluator(self) -> NetworkEvaluator:
        """The current production evaluator (replaced atomically on swap / rollback)."""
        return self._prod.evaluator

    @property
    def version(self) -> int:
        """Id of the production version (0 = the starting weights)."""
        return self._prod.id

    def observe(
        self,
        obs: Mapping[str, np.ndarray],
        action: int,
        reward: float,
        next_obs: Mapping[str, np.ndarray],
        done: bool,
        search_policy: np.ndarray | None = None,
        search_value: float | None = None,
    ) -> bool:
        """Queues one transition of one robot (non-blocking; arrays are copied).

        Args:
            obs, next_obs: "proprio" [12], "occupancy" [S, S], "action_mask" [A].
            action: macro action taken; reward: step reward; done: episode/order ended.
            search_policy: [A] MCTS visit distribution at ``obs`` (expert iteration).
            search_value: MCTS root value at ``obs``.

        Returns:
            False if it was dropped (queue full) or rejected (non-finite reward / value).
        """
        tr = checked_transition(self.stats, obs, action, reward, next_obs, done, search_policy, search_value)
        if tr is None:
            return False
        if len(self._queue) >= self.cfg.queue_size:
            self.stats["dropped"] += 1
            return False
        self._queue.append(tr)
        return True

    def report_kpis(self, kpis: Mapping[str, float]) -> dict[str, Any] | None:
        """Live production KPIs (e.g. once per episode or minute). Rolls back on a drop.

        Returns:
            The rollback log entry, or None.
        """
        with self._lock:
            evidence = self.monitor.report(kpis)
            if evidence is not None and self._prod is not self._last_good:
                bad, self._prod = self._prod, self._last_good
                self._branch = None
                self.monitor.stop()
                self.stats["rollbacks"] += 1
                return self._log("rollback", from_version=bad.id, to_version=self._prod.id,
                                 evidence=evidence)
            if self.monitor.confirmed and self._last_good is not self._prod:
                self._last_good = self._prod
                self._log("confirmed", version=self._prod.id, kpis=dict(kpis))
        return None

    def set_layout(self, layout: Layout) -> None:
        """The robots now work on ``layout``: the gate's recent suite is resampled on it."""
        self._pending_layout = layout

    def pause(self) -> None:
        """Stops background updates until :meth:`resume`; returns once the update under way
        (if any) has finished. Production weights stay; ``observe`` keeps queueing."""
        self._paused.set()
        with self._busy:
            pass

    def resume(self) -> None:
        """Background updates continue (after :meth:`pause`)."""
        self._paused.clear()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops the learner thread (idempotent); production keeps its current weights."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def alive(self) -> bool:
        """The background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ---- learning ------------------------------------------------------------------------
    def _log(self, event: str, **info: Any) -> dict[str, Any]:
        entry = {"event": event, "time": time.time(), "version": self._prod.id, **info}
        self.log.append(entry)
        return entry

    def _run(self) -> None:
        try:  # the control loop comes first: the learner thread runs at a lower CPU priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):  # not Linux (per-thread nice), or not permitted
            pass
        try:
            while not self._stop.wait(0.02):
                if time.monotonic() - self._last_update_t < self.cfg.update_interval_s:
                    continue
                with self._busy:
                    if not self._paused.is_set():
                        self.step()
        except Exception as e:  # noqa: BLE001 - a crash must never reach the host
            self.crashed = True
            self.stats["crashes"] += 1
            self._log("crash", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=4))

    def _drain(self) -> None:
        while self._queue:
            t = self._queue.popleft()
            try:
                self.store.add(t)
                self._new_since_update += 1
            except (ValueError, KeyError, TypeError):  # misshapen / missing keys
                self.stats["bad_inputs"] += 1

    def _rehearse(self, layout: Layout) -> None:
        """Expert targets of ``layout``'s situations into the rehearsal store (seeded)."""
        c = self.cfg
        seed = c.seed + 2 + 1000 * self._n_layouts  # never the gate suites' seeds
        data, _ = make_datasets(layout, GridDataConfig(n_situations=c.rehearsal_situations, n_groups=0),
                                np.random.default_rng(seed))
        assert self.rehearsal is not None
        values = np.asarray(data.value, np.float64)
        if c.rehearsal_value == "production":
            # the expert's value is the return to the first delivery (grid_pv's target); a
            # network whose value means something else (rl_pv: the continuing fleet return)
            # keeps its own values on these states, so rehearsal teaches the map's policy only
            with self._lock:
                prod = self._prod
            values = np.asarray(prod.evaluator.evaluate(data.obs)[1], np.float64)
        for i in range(len(data.policy)):
            o = {k: v[i] for k, v in data.obs.items()}
            self.rehearsal.add(Transition(o, int(data.policy[i].argmax()), 0.0, o, True,
                                          data.policy[i], float(values[i])))
        self._log("rehearsal", layout=str(getattr(layout, "name", "")), rows=len(data.policy),
                  seed=seed, value=c.rehearsal_value, value_mean=float(values.mean()) if len(values) else 0.0,
                  expert_value_mean=float(np.mean(data.value)) if len(values) else 0.0)

    def step(self) -> dict[str, Any] | None:
        """One update cycle (see the module docstring). Returns its log entry, or None."""
        self._drain()
        if self._pending_layout is not None:
            layout, self._pending_layout = self._pending_layout, None
            self._n_layouts += 1
            self.gate.set_recent(
                self._make_suite("recent", layout, self.cfg.seed + 1 + 1000 * self._n_layouts)
            )
            if self.rehearsal is not None:
                self._rehearse_pending.append(layout)
        while self._rehearse_pending:
            self._rehearse(self._rehearse_pending.pop(0))
        if (
            len(self.store) < self.cfg.min_samples
            or self._new_since_update < self.cfg.min_new_samples
            or self.monitor.watching  # the last swap is still under KPI watch
        ):
            return None
        self._new_since_update = 0
        self._last_update_t = time.monotonic()
        self.stats["updates"] += 1
        with self._lock:
            base = self._prod
        cand, info = self._train_candidate(base)
        if cand is None:
            self._branch = None
            self.stats["rejections"] += 1
            return self._log("discard", base_version=base.id, **info)
        rel = _rel_change(cand, base.net)
        info["rel_change"] = rel
        if rel > self.cfg.max_rel_change:
            self._branch = None  # the branch drifted too far from production: start over
            self.stats["rejections"] += 1
            return self._log("discard", base_version=base.id, reason="update too large", **info)
        self._branch, self._branch_base = self._candidate_state(), base.id
        cand_ev = NetworkEvaluator(cand.to(self._device), self._device)
        result = self.gate.compare(cand_ev, base.evaluator, base.id)
        with self._lock:
            if self._prod is not base:
                self.stats["rejections"] += 1
                return self._log("discard", base_version=base.id, reason="stale (rolled back)")
            if not result.accepted:
                self.stats["rejections"] += 1
                return self._log("reject", base_version=base.id, evidence=result.evidence(), **info)
            self._prod = Version(base.id + 1, cand_ev, self._branch)
            self._branch = None
            self.stats["swaps"] += 1
            self.monitor.on_swap()
            if not self.monitor.watching:  # no KPI baseline yet: the gate's evidence is all
                self._last_good = self._prod
            return self._log("swap", from_version=base.id, to_version=self._prod.id,
                             evidence=result.evidence(), **info)

    def _minibatch(self):
        """``batch_size`` rows: live data (recent + reservoir) and the rehearsal share."""
        c = self.cfg
        n_reh = int(round(c.rehearsal_fraction * c.batch_size)) if self.rehearsal is not None and len(self.rehearsal) else 0
        live = self.store.sample(c.batch_size - n_reh, replay_fraction=c.replay_fraction) if n_reh < c.batch_size else None
        if not n_reh:
            return live
        reh = self.rehearsal.sample(n_reh, replay_fraction=0.5)
        return reh if live is None else concat_batches(live, reh)

    def _candidate_state(self) -> dict[str, torch.Tensor]:
        if self.cfg.mode == "lora":
            return adapter_state(self._train)
        return {k: v.detach().clone() for k, v in self._train.state_dict().items()}

    def _loss(self, net: PolicyValueNet, teacher: PolicyValueNet, tb: dict) -> torch.Tensor:
        c = self.cfg
        loss, _ = online_loss(
            net, teacher, tb, discount=c.discount, value_weight=c.value_weight,
            adv_temperature=c.adv_temperature, adv_weight_max=c.adv_weight_max,
        )
        return loss

    def _ewc_for(self, base: Version) -> EWCState:
        if self._ewc is None or self._ewc_version != base.id:
            c = self.cfg
            n_batches = max(1, c.fisher_samples // c.fisher_batch)
            batches = [
                to_torch_batch(self.store.sample(c.fisher_batch, replay_fraction=c.replay_fraction))
                for _ in range(n_batches)
            ]
            teacher = base.net.cpu()
            self._ewc = diagonal_fisher(self._train, batches, lambda n, b: self._loss(n, teacher, b))
            self._ewc_version = base.id
        return self._ewc

    def _train_candidate(self, base: Version) -> tuple[PolicyValueNet | None, dict[str, Any]]:
        """Fine-tunes the training copy from ``base``; (candidate or None, info)."""
        c, net = self.cfg, self._train
        start = self._branch if self._branch is not None and self._branch_base == base.id else base.state
        if c.mode == "lora":
            load_adapter_state(net, start)
        else:
            net.load_state_dict(start)
        ewc = self._ewc_for(base) if c.mode == "full" and c.ewc_lambda > 0 else None
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=c.lr)
        teacher = base.net.cpu()
        taken = skipped = 0
        losses = []
        net.train()
        for _ in range(c.steps_per_update):
            tb = to_torch_batch(self._minibatch())
            loss = self._loss(net, teacher, tb)
            if ewc is not None:
                loss = loss + ewc_penalty(net, ewc, c.ewc_lambda)
            if not torch.isfinite(loss):
                skipped += 1
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
            if not torch.isfinite(norm):
                opt.zero_grad(set_to_none=True)
                skipped += 1
                continue
            opt.step()
            taken += 1
            losses.append(float(loss.detach()))
        net.eval()
        self.stats["steps"] += taken
        self.stats["skipped_nonfinite"] += skipped
        info: dict[str, Any] = {"steps": taken, "skipped_nonfinite": skipped,
                                "continued": start is not base.state,
                                "loss": float(np.mean(losses)) if losses else None,
                                "replay": {"recent": self.store.n_recent,
                                           "reservoir": self.store.n_reservoir,
                                           "rehearsal": 0 if self.rehearsal is None else len(self.rehearsal)}}
        if not taken:
            info["reason"] = "every step non-finite"
            return None, info
        cand = merged_copy(net) if c.mode == "lora" else copy.deepcopy(net).eval()
        if not all(bool(torch.isfinite(v).all()) for v in cand.state_dict().values()):
            info["reason"] = "non-finite weights"
            return None, info
        return cand, info

    # ---- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> dict[str, Path]:
        """Writes the production weights and the learner state (safetensors).

        Files: ``production.safetensors`` (+ .json, :func:`save_policy_value`); mode
        "lora": ``adapters.safetensors`` (production adapters; base digest in the
        metadata); mode "full": ``ewc.safetensors`` (anchor + Fisher), when estimated.
        """
        with self._lock:
            prod = self._prod
        return write_saved(self.cfg, prod, self._train, self._base_digest, self._ewc, Path(directory))

    def restore(self, directory: str | Path) -> None:
        """Resumes from :meth:`save`'s files: production weights, adapters / EWC state.

        Raises:
            ValueError: files of another base network or mode.
        """
        d = Path(directory)
        version, net, state, ewc = read_saved(self.cfg, self._train, self._base_digest, d)
        if ewc is not None:
            self._ewc, self._ewc_version = ewc, version
        with self._lock:
            self._prod = Version(version, NetworkEvaluator(net.to(self._device), self._device), state)
            self._last_good = self._prod
            self._branch = None
            self.monitor.stop()
        self._log("restore", directory=str(d), to_version=version)


def read_saved(
    cfg: OnlineConfig, train: PolicyValueNet, base_digest: str, directory: Path
) -> tuple[int, PolicyValueNet, dict[str, torch.Tensor], EWCState | None]:
    """Reads :meth:`OnlineLearner.save`'s files: (version, production net, training state,
    EWC state or None). ``train`` is the learner's training copy (LoRA: its adapters are
    loaded from the file). Raises ValueError for files of another base network."""
    d = Path(directory)
    ewc = None
    if cfg.mode == "lora":
        tensors, meta = load_adapters(d / "adapters.safetensors")
        info = meta["info"]
        if info.get("base_digest") != base_digest:  # type: ignore[union-attr]
            raise ValueError("online: adapters were trained on another base network")
        load_adapter_state(train, tensors)
        net, state = merged_copy(train), adapter_state(train)
        version = int(info.get("version", 0))  # type: ignore[union-attr]
    else:
        net, meta = load_policy_value(d / "production.safetensors")
        state = {k: v.clone() for k, v in net.state_dict().items()}
        version = int(meta["training"].get("version", 0))
        if (d / "ewc.safetensors").exists():
            ewc, _ = load_ewc(d / "ewc.safetensors")
    return version, net, state, ewc


def write_saved(
    cfg: OnlineConfig, prod: Version, train: PolicyValueNet, base_digest: str,
    ewc: EWCState | None, directory: Path,
) -> dict[str, Path]:
    """:meth:`OnlineLearner.save`'s files for production version ``prod`` (``train``: the
    training copy, LoRA: its adapters are set to the production ones to be written)."""
    d = Path(directory)
    info = {"stage": "online", "mode": cfg.mode, "version": prod.id, "base_digest": base_digest}
    out = {"production": save_policy_value(prod.net.cpu(), d / "production.safetensors", training=info)}
    if cfg.mode == "lora":
        load_adapter_state(train, prod.state)
        out["adapters"] = save_adapters(train, d / "adapters.safetensors", info=info)
    elif ewc is not None:
        out["ewc"] = save_ewc(ewc, d / "ewc.safetensors", lam=cfg.ewc_lambda)
    return out
