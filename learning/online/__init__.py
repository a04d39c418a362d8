"""Online incremental learning: the agent keeps learning while the robots run.

Host-facing API (``agent.Agent`` with ``learning=online``)::

    learner = OnlineLearner(cfg: OnlineConfig, evaluator: NetworkEvaluator, layout=layout)
    # control loop, at each robot decision (non-blocking, copies the arrays, no torch):
    learner.observe(obs, action, reward, next_obs, done,
                    search_policy=visits [7] | None, search_value=root_value | None)
    learner.evaluator          # the production NetworkEvaluator: read it at every search
                               # (swapped atomically by the learner; never half-updated)
    learner.report_kpis({"completion_rate": 0.93})   # e.g. per episode; may roll back
    learner.set_layout(layout) # the map changed (gate's recent suite follows it)
    learner.log                # list of dicts: swap / reject / discard / rollback /
                               # confirmed / crash / restore, each with its evidence
    learner.stats              # counters: observed, dropped, swaps, rollbacks, ...
    learner.save(dir); learner.restore(dir)   # safetensors: weights, adapters, EWC state
    learner.pause(); learner.resume()   # hold background updates (pause waits for the
                               # update under way); observe keeps queueing
    learner.close()            # idempotent; production keeps its current weights

``background=False`` runs no thread: call ``learner.step()`` for one update cycle
(reproducible from ``(cfg, seed)``; tests and grid-model evals use it).

``make_learner(cfg, evaluator, layout=..., background=True, worker="process")`` is what a
host uses: ``worker="process"`` gives a :class:`ProcessLearner` (the same host API; training
and the gate run in a spawned worker process, weights come back as safetensors bytes),
``worker="thread"`` an ``OnlineLearner`` with its daemon thread.

Parts: :mod:`~learning.online.replay` (recent window + seeded reservoir),
:mod:`~learning.online.lora` (hand-written LoRA, exact merge), :mod:`~learning.online.ewc`
(diagonal-Fisher EWC), :mod:`~learning.online.loss` (expert iteration + TD/AWR),
:mod:`~learning.online.gate` (shadow gate on the grid model, KPI monitor),
:mod:`~learning.online.learner` (the learner, its thread), :mod:`~learning.online.worker`
(the learner in a worker process).
"""

from learning.online.config import DEFAULT_LORA_TARGETS, WORKERS, OnlineConfig, check_worker
from learning.online.ewc import EWCState, diagonal_fisher, ewc_penalty, load_ewc, save_ewc
from learning.online.gate import GateResult, KpiMonitor, ShadowGate, SituationSuite
from learning.online.learner import OnlineLearner, Version, weights_digest
from learning.online.lora import (
    LoRALinear,
    adapter_state,
    apply_lora,
    load_adapter_state,
    load_adapters,
    merged_copy,
    save_adapters,
)
from learning.online.loss import online_loss, to_torch_batch
from learning.online.replay import Batch, ReplayStore, Transition
from learning.online.worker import ProcessLearner, make_learner

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "Batch",
    "EWCState",
    "GateResult",
    "KpiMonitor",
    "LoRALinear",
    "OnlineConfig",
    "OnlineLearner",
    "ProcessLearner",
    "ReplayStore",
    "ShadowGate",
    "SituationSuite",
    "Transition",
    "Version",
    "WORKERS",
    "adapter_state",
    "apply_lora",
    "check_worker",
    "diagonal_fisher",
    "ewc_penalty",
    "load_adapter_state",
    "load_adapters",
    "load_ewc",
    "make_learner",
    "merged_copy",
    "online_loss",
    "save_adapters",
    "save_ewc",
    "to_torch_batch",
    "weights_digest",
]
