"""The online learner in a worker process (``worker="process"``, the default background mode).

Why a process: the learner's work (Adam steps, and above all the shadow gate's MCTS
searches on the grid model) is mostly Python. On a thread of the control process it holds
the interpreter lock in turns with the control loop, and every decision waits for it (the
thread was niced and the switch interval 1 ms; p99 decision latency was still 1.43x that of
learning off, docs/ONLINE.md). A spawned process has its own interpreter: the control loop
never waits for it; the two only share CPU cores (the worker is niced, one torch thread).

:class:`ProcessLearner` is the host side and has :class:`~learning.online.OnlineLearner`'s
host API (``observe``, ``evaluator``, ``version``, ``report_kpis``, ``set_layout``,
``pause`` / ``resume``, ``log``, ``stats``, ``crashed``, ``alive``, ``save`` / ``restore``,
``close``). The worker runs an ``OnlineLearner(background=False)`` and calls its ``step``.

Channels:

- host -> worker, samples: a bounded ``multiprocessing`` queue (``queue_size``);
  ``observe`` puts without blocking, a full queue drops the sample (counted in ``dropped``).
  While paused the worker does not read it (as the thread learner does not drain).
- host -> worker, control: layout changes, rollbacks, the end of a KPI watch, swap verdicts,
  restore.
- worker -> host: a pipe of framed messages: a JSON header, then raw blobs. Weights travel
  as **safetensors bytes** (``safetensors.torch.save`` / ``load``: no pickle, no code
  execution on the host); log entries and counters as JSON.

Who decides what: the worker trains and gates; a candidate that passes the gate is a
*proposal*. The host's receiver thread loads its weights (safetensors, one
``load_state_dict``) and commits it under the host's lock unless production moved since the
proposal's base (a rollback): the swap is one attribute assignment, so a search never mixes
two networks. The KPI monitor and the rollback live on the host, which sees production's
KPIs; the worker is told when a swap is under KPI watch (no new update then, as in the
thread learner) and when it rolled back (training restarts from that version).

Crash isolation: an exception in the worker is sent as a ``crash`` (traceback) before it
exits; a worker that dies without a word (killed, out of memory) is noticed by the receiver
thread when the pipe closes and logged as a ``crash`` with its exit code. Either way the host
keeps serving its last production weights (the KPI monitor still runs) and ``observe``
drops samples from then on.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from learning.evaluator import NetworkEvaluator
from learning.network import PolicyValueNet
from learning.online.config import OnlineConfig
from learning.online.ewc import EWCState
from learning.online.gate import KpiMonitor
from learning.online.learner import (
    OnlineLearner,
    Version,
    checked_transition,
    read_saved,
    weights_digest,
    write_saved,
)
from learning.online.lora import adapter_state, apply_lora
from planning.grid_model import GridModelConfig
from sim.layout import Layout

__all__ = ["ProcessLearner", "make_learner"]

#: indices of the shared flags: stop, paused, pause requests (host), acknowledged (worker)
_STOP, _PAUSED, _REQ, _ACK = range(4)

#: counters the worker owns (the host takes them from the worker's reports)
_WORKER_STATS = ("updates", "steps", "skipped_nonfinite", "bad_inputs")


def make_learner(
    cfg: OnlineConfig,
    evaluator: NetworkEvaluator,
    *,
    layout: Layout,
    model_config: GridModelConfig | None = None,
    background: bool = True,
    worker: str = "process",
    gate_search: Mapping[str, Any] | None = None,
) -> OnlineLearner | ProcessLearner:
    """The learner of a host: ``background=False`` -> :class:`OnlineLearner` without a
    thread (call ``step()``); else ``worker`` "process" -> :class:`ProcessLearner`, "thread"
    -> :class:`OnlineLearner` with its daemon thread.

    Raises:
        ValueError: ``worker`` not one of ``learning.online.WORKERS`` (one line).
    """
    from learning.online.config import check_worker

    check_worker(worker)
    if background and worker == "process":
        return ProcessLearner(cfg, evaluator, layout=layout, model_config=model_config,
                              gate_search=gate_search)
    return OnlineLearner(cfg, evaluator, layout=layout, model_config=model_config,
                         background=background, gate_search=gate_search)


# ---- framing of worker -> host messages ------------------------------------------------------
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


def _send(conn: Any, header: dict[str, Any], blobs: Mapping[str, bytes] | None = None) -> None:
    blobs = dict(blobs or {})
    conn.send_bytes(json.dumps(_jsonable({**header, "blobs": list(blobs)})).encode())
    for name in blobs:
        conn.send_bytes(blobs[name])


def _recv(conn: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    header = json.loads(conn.recv_bytes().decode())
    return header, {name: conn.recv_bytes() for name in header.pop("blobs", [])}


def _tensors_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    return st_save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})


# ---- the worker process ---------------------------------------------------------------------
class _HostMonitor:
    """Stands in for the worker learner's KPI monitor: the host's monitor decides; the
    worker only knows whether a swap is under watch (no update then)."""

    watching = False

    def on_swap(self) -> None:  # the host's verdict sets ``watching``
        pass

    def stop(self) -> None:
        self.watching = False


def _worker_main(init: dict[str, Any], samples: Any, control: Any, conn: Any, flags: Any
                 ) -> None:  # pragma: no cover - runs in the child
    try:  # the control loop comes first
        os.nice(10)
    except (AttributeError, OSError):
        pass
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    learner = None
    try:
        net = PolicyValueNet(init["net_config"])
        net.load_state_dict(st_load(init["weights"]), strict=True)
        learner = OnlineLearner(init["cfg"], NetworkEvaluator(net.eval()), layout=init["layout"],
                                model_config=init["model_config"], background=False,
                                gate_search=init["gate_search"])
        learner.monitor = _HostMonitor()  # type: ignore[assignment]
        _Worker(learner, samples, control, conn, flags).run()
    except Exception as e:  # noqa: BLE001 - reported to the host, then the worker ends
        try:
            _send(conn, {"kind": "crash", "error": f"{type(e).__name__}: {e}",
                         "traceback": traceback.format_exc(limit=6),
                         "stats": {} if learner is None else dict(learner.stats)})
        except (OSError, ValueError):
            pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


class _Worker:  # pragma: no cover - runs in the child (tested through ProcessLearner)
    def __init__(self, learner: OnlineLearner, samples, control, conn, flags) -> None:
        self.learner, self.samples, self.control, self.conn = learner, samples, control, conn
        self.flags = flags
        self.versions: dict[int, Version] = {0: learner._prod}
        self.sent_log = 0
        self.sent_ewc = -1
        self.sent_stats: dict[str, int] = {}

    def run(self) -> None:
        lr = self.learner
        _send(self.conn, {"kind": "ready", "stats": dict(lr.stats)})
        f = self.flags
        while not f[_STOP]:
            self._control()
            if f[_PAUSED]:  # idle here, between updates: acknowledge the host's pause
                f[_ACK] = f[_REQ]
                time.sleep(0.02)
                continue
            entry = None
            self._drain()
            due = time.monotonic() - lr._last_update_t >= lr.cfg.update_interval_s
            if lr.monitor.watching or not due:
                lr._drain()  # into the replay store, as the thread learner's step does
            else:
                entry = lr.step()
                if entry is not None and entry["event"] == "swap":
                    self._propose(entry)
                self._report()
            if entry is None:
                time.sleep(0.02)
        self._report()
        _send(self.conn, {"kind": "exit", "stats": dict(lr.stats)})

    def _drain(self) -> None:
        q = self.learner._queue
        for _ in range(self.learner.cfg.queue_size):
            try:
                q.append(self.samples.get_nowait())
            except queue.Empty:
                break

    def _control(self, block_for_verdict: bool = False) -> dict[str, Any] | None:
        lr = self.learner
        while True:
            try:
                op, arg = self.control.get(timeout=1.0) if block_for_verdict else self.control.get_nowait()
            except queue.Empty:
                if block_for_verdict and not self.flags[_STOP]:
                    continue
                return None
            if op == "layout":
                lr.set_layout(arg)
            elif op == "rollback":  # the host rolled production back to version ``arg``
                lr._prod, lr._branch = self.versions[int(arg)], None
                lr.monitor.watching = False
            elif op == "watch":
                lr.monitor.watching = bool(arg)
            elif op == "restore":
                lr.restore(arg)
                self.versions = {lr._prod.id: lr._prod}
            elif op == "verdict":
                return arg

    def _propose(self, entry: dict[str, Any]) -> None:
        """The gate passed: the host commits the candidate (or refuses it as stale)."""
        lr = self.learner
        cand = lr._prod
        lr.log.pop()  # the host logs the swap when it commits it
        _send(self.conn, {"kind": "propose", "entry": entry},
              {"weights": _tensors_bytes(cand.net.state_dict()), "state": _tensors_bytes(cand.state)})
        verdict = self._control(block_for_verdict=True)
        if verdict is None:  # stopping
            return
        if verdict["accepted"]:
            self.versions[cand.id] = cand
            lr.monitor.watching = bool(verdict["watching"])
        else:
            lr._prod, lr._branch = self.versions[int(verdict["version"])], None

    def _report(self) -> None:
        lr = self.learner
        new = lr.log[self.sent_log :]
        ewc_new = lr._ewc is not None and lr._ewc_version != self.sent_ewc
        if not new and not ewc_new and lr.stats == self.sent_stats:
            return  # nothing to tell (the host's receiver thread stays asleep)
        self.sent_log, self.sent_stats = len(lr.log), dict(lr.stats)
        blobs = {}
        if ewc_new:
            self.sent_ewc = lr._ewc_version
            blobs = {"anchor": _tensors_bytes(lr._ewc.anchor), "fisher": _tensors_bytes(lr._ewc.fisher)}
        _send(self.conn, {"kind": "report", "stats": dict(lr.stats),
                          "log": [{k: v for k, v in e.items()} for e in new],
                          "ewc": {"version": lr._ewc_version,
                                  "n_samples": lr._ewc.n_samples if lr._ewc is not None else 0}}, blobs)


# ---- the host side --------------------------------------------------------------------------
class ProcessLearner:
    """The host side of a learner running in a worker process (module docstring).

    Args:
        cfg, evaluator, layout, model_config, gate_search: as :class:`OnlineLearner`
            (the worker's copy of the network is sent as safetensors bytes).
        start_method: ``multiprocessing`` start method ("spawn" or "forkserver"; never
            "fork": the host runs threads, PyBullet, maybe Ray).

    Example:
        >>> learner = ProcessLearner(OnlineConfig(), load_network_evaluator(), layout=layout)
        >>> learner.observe(obs, action, reward, next_obs, done, search_policy=visits)
        >>> learner.evaluator.evaluate(encoded)   # production: swapped atomically
        >>> learner.close()
    """

    def __init__(
        self,
        cfg: OnlineConfig,
        evaluator: NetworkEvaluator,
        *,
        layout: Layout,
        model_config: GridModelConfig | None = None,
        gate_search: Mapping[str, Any] | None = None,
        start_method: str = "spawn",
    ) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"online.start_method: {start_method!r}; allowed spawn, forkserver")
        self.cfg = cfg
        self.worker = "process"
        self._device = str(evaluator.device)
        base = copy.deepcopy(evaluator.net).cpu().eval()
        self._base = base
        self._base_digest = weights_digest(base)
        # the host's training copy only holds production adapters for save / restore: the
        # same seeds as the worker's (OnlineLearner.__init__), so version 0's state matches
        gen = torch.Generator().manual_seed(cfg.seed)
        self._train = copy.deepcopy(base)
        if cfg.mode == "lora":
            apply_lora(self._train, cfg.lora_targets, rank=cfg.lora_rank, alpha=cfg.lora_alpha, generator=gen)
            state0 = adapter_state(self._train)
        else:
            state0 = {k: v.clone() for k, v in base.state_dict().items()}
        self._prod = Version(0, evaluator, state0)
        self._last_good = self._prod
        self._ewc: EWCState | None = None
        self.monitor = KpiMonitor(cfg.kpi_keys, cfg.kpi_window, cfg.kpi_drop)
        self._lock = threading.Lock()
        self.log: list[dict[str, Any]] = []
        self.stats: dict[str, int] = dict.fromkeys(
            ("observed", "dropped", "rejected_inputs", "bad_inputs", "updates", "steps",
             "skipped_nonfinite", "swaps", "rejections", "rollbacks", "crashes"), 0,
        )
        self._worker_rejections = 0
        self._host_rejections = 0
        self.crashed = False
        self._closing = False
        self._ready = threading.Event()
        ctx = mp.get_context(start_method)
        self._samples = ctx.Queue(cfg.queue_size)
        self._control = ctx.Queue()
        # lock-free shared flags (a worker killed inside a multiprocessing Event / Condition
        # would leave its lock or sleeper count behind and hang the host's next set())
        self._flags = ctx.RawArray("i", 4)
        recv, send = ctx.Pipe(duplex=False)
        init = {"cfg": cfg, "net_config": base.config, "weights": _tensors_bytes(base.state_dict()),
                "layout": layout, "model_config": model_config, "gate_search": dict(gate_search or {})}
        self._proc = ctx.Process(target=_worker_main, name="online-learner", daemon=True,
                                 args=(init, self._samples, self._control, send, self._flags))
        self._proc.start()
        send.close()  # the worker holds the only write end: its exit closes the pipe
        self._conn = recv
        self._receiver = threading.Thread(target=self._receive, name="online-learner-rx", daemon=True)
        self._receiver.start()

    # ---- host-facing (OnlineLearner's API) -----------------------------------------------
    @property
    def evaluator(self) -> NetworkEvaluator:
        """The current production evaluator (replaced atomically on swap / rollback)."""
        return self._prod.evaluator

    @property
    def version(self) -> int:
        """Id of the production version (0 = the starting weights)."""
        return self._prod.id

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """The worker runs (not crashed, not closed)."""
        return not self.crashed and not self._closing and self._proc.is_alive()

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
        """Queues one transition for the worker (:meth:`OnlineLearner.observe`; never blocks).

        Returns:
            False if it was dropped (queue full, worker gone) or rejected (non-finite).
        """
        tr = checked_transition(self.stats, obs, action, reward, next_obs, done, search_policy, search_value)
        if tr is None:
            return False
        if self.crashed or self._closing:
            self.stats["dropped"] += 1
            return False
        try:
            self._samples.put_nowait(tr)
        except (queue.Full, ValueError, OSError):  # full, or closed under us
            self.stats["dropped"] += 1
            return False
        return True

    def report_kpis(self, kpis: Mapping[str, float]) -> dict[str, Any] | None:
        """Live production KPIs; rolls back on a drop (host side, as :class:`OnlineLearner`)."""
        with self._lock:
            was = self.monitor.watching
            evidence = self.monitor.report(kpis)
            if evidence is not None and self._prod is not self._last_good:
                bad, self._prod = self._prod, self._last_good
                self.monitor.stop()
                self.stats["rollbacks"] += 1
                self._tell("rollback", self._prod.id)
                return self._log("rollback", from_version=bad.id, to_version=self._prod.id,
                                 evidence=evidence)
            if was and not self.monitor.watching:
                self._tell("watch", False)
            if self.monitor.confirmed and self._last_good is not self._prod:
                self._last_good = self._prod
                self._log("confirmed", version=self._prod.id, kpis=dict(kpis))
        return None

    def set_layout(self, layout: Layout) -> None:
        """The robots now work on ``layout`` (the worker resamples its recent gate suite)."""
        self._tell("layout", layout)

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        """Waits until the worker has started (imports, gate suites); False if it died."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.crashed or not self._proc.is_alive() or time.monotonic() > deadline:
                return False
        return True

    def pause(self, timeout_s: float = 600.0) -> None:
        """Stops updates until :meth:`resume`; returns once the worker is started and the
        update under way (if any) has finished. ``observe`` keeps queueing (bounded)."""
        f = self._flags
        f[_PAUSED] = 1
        f[_REQ] += 1  # the worker acknowledges it only between updates
        self.wait_ready(timeout_s)
        deadline = time.monotonic() + timeout_s
        while f[_ACK] != f[_REQ] and self.alive and time.monotonic() < deadline:
            time.sleep(0.01)

    def resume(self) -> None:
        """Updates continue (after :meth:`pause`)."""
        self._flags[_PAUSED] = 0

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops the worker (idempotent); production keeps its current weights."""
        if self._closing:
            return
        self._closing = True
        self._flags[_STOP] = 1
        self._receiver.join(timeout_s)
        self._proc.join(5.0 if not self._receiver.is_alive() else 0.1)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
            self._receiver.join(2.0)
            self._log("terminated", reason=f"the worker did not stop within {timeout_s:g} s")
        for q in (self._samples, self._control):
            q.cancel_join_thread()
            q.close()
        self._conn.close()

    def save(self, directory: str | Path) -> dict[str, Path]:
        """:meth:`OnlineLearner.save`'s files, from the host's production version."""
        with self._lock:
            prod = self._prod
        return write_saved(self.cfg, prod, self._train, self._base_digest, self._ewc, Path(directory))

    def restore(self, directory: str | Path) -> None:
        """Resumes from :meth:`save`'s files (host production; the worker restores too)."""
        d = Path(directory)
        version, net, state, ewc = read_saved(self.cfg, self._train, self._base_digest, d)
        with self._lock:
            self._ewc = ewc or self._ewc
            self._prod = Version(version, NetworkEvaluator(net.to(self._device), self._device), state)
            self._last_good = self._prod
            self.monitor.stop()
            self._tell("restore", str(d))
        self._log("restore", directory=str(d), to_version=version)

    # ---- internals -------------------------------------------------------------------------
    def _log(self, event: str, **info: Any) -> dict[str, Any]:
        entry = {"event": event, "time": time.time(), "version": self._prod.id, **info}
        self.log.append(entry)
        return entry

    def _tell(self, op: str, arg: Any) -> None:
        if self.crashed or self._closing:
            return
        try:
            self._control.put_nowait((op, arg))
        except (ValueError, OSError):
            pass

    def _worker_stats(self, st: Mapping[str, int]) -> None:
        for k in _WORKER_STATS:
            if k in st:
                self.stats[k] = int(st[k])
        if "rejections" in st:
            self._worker_rejections = int(st["rejections"])
        self.stats["rejections"] = self._worker_rejections + self._host_rejections

    def _receive(self) -> None:
        """The receiver thread: reports, proposals, crashes; the worker's end on EOF."""
        reason = None
        try:
            while True:
                header, blobs = _recv(self._conn)
                kind = header["kind"]
                if "stats" in header:
                    self._worker_stats(header["stats"])
                if kind == "ready":
                    self._ready.set()
                elif kind == "report":
                    self.log.extend(header["log"])
                    if blobs:
                        self._ewc = EWCState(st_load(blobs["anchor"]), st_load(blobs["fisher"]),
                                             int(header["ewc"]["n_samples"]))
                elif kind == "propose":
                    self._commit(header["entry"], blobs)
                elif kind == "crash":
                    self._crash(header["error"], header.get("traceback"))
                    return
                elif kind == "exit":
                    return
        except (EOFError, OSError) as e:
            reason = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a bad message ends learning, never the host
            reason = f"{type(e).__name__}: {e}"
        if not self._closing:  # the worker died without a word (killed, out of memory)
            self._proc.join(1.0)
            self._crash(f"worker process ended (exit code {self._proc.exitcode}; {reason})", None)

    def _crash(self, error: str, tb: str | None) -> None:
        self.crashed = True
        self.stats["crashes"] += 1
        self._ready.set()
        self._log("crash", error=error, **({"traceback": tb} if tb else {}), pid=self._proc.pid)

    def _commit(self, entry: dict[str, Any], blobs: Mapping[str, bytes]) -> None:
        """A candidate the worker's gate passed: swap it in unless production moved."""
        base_id = int(entry["from_version"])
        net = PolicyValueNet(self._base.config)
        net.load_state_dict(st_load(blobs["weights"]), strict=True)
        ev = NetworkEvaluator(net.eval().to(self._device), self._device)
        state = st_load(blobs["state"])
        with self._lock:
            if self._prod.id != base_id or self.monitor.watching:
                self._host_rejections += 1
                self.stats["rejections"] = self._worker_rejections + self._host_rejections
                self._log("discard", base_version=base_id, reason="stale (production moved)")
                self._tell("verdict", {"accepted": False, "version": self._prod.id})
                return
            self._prod = Version(base_id + 1, ev, state)
            self.stats["swaps"] += 1
            self.monitor.on_swap()
            if not self.monitor.watching:  # no KPI baseline yet: the gate's evidence is all
                self._last_good = self._prod
            self._tell("verdict", {"accepted": True, "watching": self.monitor.watching})
            self.log.append({**entry, "time": time.time(), "version": self._prod.id})
