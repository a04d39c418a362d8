"""``forklift eval task=localization|planning|fleet|continual``: side-by-side evaluations with a report
(fleet: agent/eval_fleet.py; continual, online learning across a site change: agent/eval_continual.py).

- ``task=localization``: the PyBullet warehouse runs with the classic baseline driving on
  ground truth; every robot's sensor frames and true poses are logged, then the EKF, the
  UKF and dead reckoning are run over the same logs side by side
  (:func:`perception.evaluate_localization`). ``sensors=nominal`` uses the nominal noise;
  ``sensors=degraded`` uses the degraded sensor profile (``configs/sensors/degraded.yaml``:
  noisier odometry with slip bursts, cheap IMU, sparse lidar, NLOS-heavy UWB) and, unless
  the scenario already injects faults, adds sensor outage windows (one modality at a time),
  odometry slip bursts and blocked aisles so recovery and blockage detection are scored.
- ``task=planning``: return against number of simulations on seeded grid-model situations
  for each evaluator (:func:`planning.evaluation.run_planning_eval`), and "planning
  efficiency" (simulations needed to reach 95% of the best return).

Outputs in the run dir: ``config.yaml``, ``report.json``, and ``localization.png`` or
``planning.png``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from agent.config import ConfigError
from agent.verbs import Invocation, register_verb
from agent.config import AppConfig, to_baseline_config, to_sim_config
from agent.eval_continual import ContinualSection

__all__ = ["EvalSection", "eval_verb", "planning_efficiency", "record_localization_logs"]

DEFAULT_SIMS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class FleetParallel:
    """``eval.workers``: episodes run at a time (1 = serially here; N > 1 = on Ray)."""

    workers: int = 1


@dataclass(frozen=True)
class RaySection:
    """``ray.address``: null = a local Ray on 127.0.0.1; ``auto`` / ``host:port`` = a cluster."""

    address: str | None = None
    num_cpus: int | None = None


@dataclass(frozen=True)
class EvalSection:
    """The ``eval`` verb's own top-level keys.

    Attributes:
        task: what to evaluate.
        evaluator: planning evaluators, comma separated (``all`` = uniform,rollout,network).
        checkpoint: network weights (``.safetensors``); ``null`` = the shipped weights.
        sims: simulation budgets for the planning curve.
        situations: number of seeded grid-model situations.
        filters: localization filters, comma separated (ekf, ukf, dead_reckoning).
    """

    task: Literal["localization", "planning", "fleet", "continual"] = "localization"
    evaluator: str = "all"
    checkpoint: str | None = None
    sims: tuple[int, ...] = DEFAULT_SIMS
    situations: int = 24
    filters: str = "ekf,ukf,dead_reckoning"
    planners: tuple[str, ...] = ("mcts_rl", "classic")
    bootstrap: int = 2000
    eval: FleetParallel = dataclasses.field(default_factory=lambda: FleetParallel())
    ray: RaySection = dataclasses.field(default_factory=lambda: RaySection())
    continual: ContinualSection = dataclasses.field(default_factory=lambda: ContinualSection())

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line) for a bad value; nothing is written before."""
        if self.task == "fleet":
            self.planner_entries()
        if self.task == "continual":
            self.continual.check()
        if self.bootstrap < 1:
            raise ConfigError("bootstrap", "must be >= 1", self.bootstrap)
        if self.eval.workers < 1:
            raise ConfigError("eval.workers", "must be >= 1", self.eval.workers)
        self.evaluator_names()
        self.filter_names()
        if not self.sims or any(s < 1 for s in self.sims):
            raise ConfigError("sims", f"{list(self.sims)}: allowed a non-empty list of integers >= 1")
        if self.situations < 1:
            raise ConfigError("situations", f"{self.situations}: allowed >= 1")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ConfigError("checkpoint", f"{self.checkpoint!r} is not a file; allowed a .safetensors path or null")

    def planner_entries(self) -> list:
        from agent.eval_parallel import PlannerEntry

        if not self.planners:
            raise ConfigError("planners", "must be a non-empty list of planner names", list(self.planners))
        entries = [PlannerEntry.parse(n) for n in self.planners]
        if len({e.label for e in entries}) != len(entries):
            raise ConfigError("planners", "names must be distinct", list(self.planners))
        return entries

    def evaluator_names(self) -> list[str]:
        return _names(self.evaluator, ("uniform", "rollout", "network"), "evaluator")

    def filter_names(self) -> list[str]:
        return _names(self.filters, ("ekf", "ukf", "dead_reckoning"), "filters")


def _names(value: str, allowed: tuple[str, ...], field: str) -> list[str]:
    names = allowed if value == "all" else tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(field, f"{value!r}: allowed all or a comma list of {', '.join(allowed)}")
    return list(names)


# ---- localization ------------------------------------------------------------------------

def _degraded(app: AppConfig) -> AppConfig:
    """Keep the selected (degraded) sensor profile; add outage windows if no faults are set.

    With the ``nominal`` scenario (faults off), the evaluation turns on one-modality-at-a-time
    sensor outages (lidar, UWB, fiducial), odometry slip bursts and blocked aisles, so that
    recovery after outages and blockage detection are scored. A scenario with faults enabled
    (``scenario=exceptions`` or overrides) is used exactly as configured.
    """
    if app.scenario.faults.enabled:
        return app
    faults = dataclasses.replace(
        app.scenario.faults, enabled=True, sensor_outage_rate=1.5, sensor_outage_duration=(3.0, 8.0),
        sensor_outage_kinds=("lidar", "uwb", "fiducial"), odom_slip_rate=1.0, blocked_aisle_rate=1.0)
    return dataclasses.replace(app, scenario=dataclasses.replace(app.scenario, faults=faults))


def record_localization_logs(app: AppConfig, episode: int):
    """Drive one episode with the baseline on ground truth; log frames and truth per robot.

    Returns:
        (layout, robot logs, injected blockages) for :func:`perception.evaluate_localization`.
    """
    from agent.baseline import BaselineController
    from perception import InjectedBlockage, OutageWindow, RobotLog
    from sim.types import Pose
    from sim.warehouse import WarehouseSim

    sim = WarehouseSim(to_sim_config(app), seed=app.seed + episode)
    try:
        frames = sim.reset()
        ctrl = BaselineController(to_baseline_config(app))
        ctrl.reset(sim)
        n = sim.n_robots
        log_frames: list[list] = [[] for _ in range(n)]
        truth: list[list[np.ndarray]] = [[] for _ in range(n)]
        gt0 = sim.ground_truth()
        while not sim.done:
            gt = sim.ground_truth()
            for i, f in enumerate(frames):
                log_frames[i].append(f)
                truth[i].append(gt[i].copy())
            cmds = ctrl.act(frames, sim.time)
            frames = sim.step(cmds)
        outages: list[list] = [[] for _ in range(n)]
        blockages = []
        for ev in sim.events:
            if ev.kind == "sensor_outage" and ev.robot is not None:
                sensor = str(ev.detail).split()[0] if ev.detail else "unknown"
                end = ev.end_t if ev.end_t is not None else sim.time
                outages[ev.robot].append(OutageWindow(sensor, ev.onset_t, end))
            elif ev.kind == "blocked_aisle" and ev.cell is not None:
                end = ev.end_t if ev.end_t is not None else sim.time
                blockages.append(InjectedBlockage(np.array([ev.cell], dtype=np.int64), ev.onset_t, end))
        cov0 = np.diag([0.05**2, 0.05**2, np.deg2rad(2.0) ** 2])
        logs = [RobotLog(robot_id=i, frames=tuple(log_frames[i]), truth=np.array(truth[i]),
                         initial_pose=Pose(float(gt0[i, 0]), float(gt0[i, 1]), float(gt0[i, 2]), cov0),
                         outages=tuple(outages[i])) for i in range(n)]
        return sim.layout, logs, blockages
    finally:
        sim.close()


def _eval_localization(inv: Invocation, sec: EvalSection, out: Path) -> dict:
    from rich.console import Console
    from rich.table import Table

    from perception import evaluate_localization, plot_errors

    app = inv.app
    degraded = inv.choices.get("sensors") == "degraded"
    if degraded:
        app = _degraded(app)
    kinds = sec.filter_names()
    layout, logs, blockages = None, [], []
    for ep in range(app.episodes):
        layout, ep_logs, ep_blocks = record_localization_logs(app, ep)
        logs += ep_logs
        blockages += ep_blocks
    result = evaluate_localization(layout, logs, kinds=kinds, blockages=blockages if blockages else None)
    plot_errors(result, str(out / "localization.png"))
    d = result.to_dict()
    table = Table(title=f"localization ({'degraded' if degraded else 'nominal'} sensors, "
                        f"{app.episodes} episode(s) x {app.duration_s:.0f} s x {app.n_robots} robots)")
    table.add_column("metric")
    for k in kinds:
        table.add_column(k, justify="right")
    for label, key, fmt in (("position RMSE (cm)", "pos_rmse_cm", "{:.2f}"), ("yaw RMSE (deg)", "yaw_rmse_deg", "{:.3f}"),
                            ("p95 error (cm)", "pos_p95_cm", "{:.2f}"), ("max error (cm)", "pos_max_cm", "{:.2f}"),
                            ("divergences", "divergences", "{}"), ("gating rejections", "rejections_total", "{}"),
                            ("max recovery after outage (s)", "max_recovery_s", "{:.2f}")):
        row = []
        for k in kinds:
            m = d.get(k, {})
            v = sum(m.get("rejections", {}).values()) if key == "rejections_total" else m.get(key)
            row.append("-" if v is None else fmt.format(v))
        table.add_row(label, *row)
    Console().print(table)
    b = d.get("blockage") or d.get("blockages")
    if b:
        Console().print("blockage detection: " + ", ".join(f"{k}={v}" for k, v in b.items()
                                                          if not isinstance(v, (list, dict))))
    return {"task": "localization", "sensors": "degraded" if degraded else "nominal", "result": d}


# ---- planning ----------------------------------------------------------------------------

def _network_evaluator(checkpoint: str | None):
    from learning import DEFAULT_WEIGHTS, load_network_evaluator

    path = Path(checkpoint) if checkpoint else DEFAULT_WEIGHTS
    if not path.is_file():
        raise ConfigError("checkpoint", f"{str(path)!r} is not a file; allowed a .safetensors path or null")
    try:
        return load_network_evaluator(path)
    except ValueError as e:
        raise ConfigError("checkpoint", str(e).splitlines()[0]) from None


FEWER_TARGET = 0.40  # the product claim: >= 40 % fewer simulations with the network than rollouts
AIM_RATIO = 4.0  # the aim: 4x fewer


def _sims_to_reach(curve, sims, threshold: float) -> int | None:
    hit = [s for s, r in zip(sims, curve) if float(r) >= threshold - 1e-12]
    return int(hit[0]) if hit else None


def planning_efficiency(result, *, network: str = "network", baseline: str = "rollout") -> dict:
    """Simulations each evaluator needs for 95 % of the best return, and network vs baseline.

    Two readings of "95 % of the best return" (best = the best mean return of any
    evaluator at any budget of this run):

    * ``span``: 95 % of the way from the worst to the best mean return (the planning
      package's definition, :func:`planning.evaluation.run_planning_eval`; defined for any sign);
    * ``of_best``: a mean return >= 0.95 x best (only when best > 0, else None).

    For each reading: ``sims`` per evaluator (None = not within ``max_sims``) and, when both
    ``network`` and ``baseline`` were run, ``ratio`` = baseline sims / network sims,
    ``fewer`` = 1 - network / baseline and whether the claim (``fewer`` >= 40 %) and the aim
    (ratio >= 4) are ``met`` / ``missed`` / ``undetermined``. A baseline that never reaches
    the threshold needs more than ``max_sims``: ``ratio`` and ``fewer`` are then lower
    bounds (``exact`` False).

    Args:
        result: a :class:`planning.evaluation.PlanningEvalResult`.
        network, baseline: evaluator names to compare.
    """
    sims = tuple(int(s) for s in result.sims)
    best, worst = float(result.best_return), float(result.worst_return)
    thresholds = {"span": worst + 0.95 * (best - worst), "of_best": 0.95 * best if best > 0 else None}
    out: dict = {"best_return": best, "worst_return": worst, "max_sims": max(sims)}
    for reading, thr in thresholds.items():
        need = {n: (None if thr is None else _sims_to_reach(c, sims, thr)) for n, c in result.mean_return.items()}
        entry: dict = {"threshold_return": thr, "sims": need}
        if network in need and baseline in need:
            entry[f"{network}_vs_{baseline}"] = _compare(need[network], need[baseline], max(sims))
        out[reading] = entry
    return out


def _compare(net: int | None, base: int | None, max_sims: int) -> dict:
    if net is None:  # the network never got there: worse than a baseline that did
        verdict = "missed" if base is not None else "undetermined"
        return {"ratio": None, "fewer": None, "exact": False,
                "claim_40pct_fewer": verdict, "aim_4x": verdict}
    exact = base is not None
    ratio = (base if exact else max_sims) / net  # a baseline that never got there needs > max_sims
    fewer = 1.0 - 1.0 / ratio

    def verdict(ok: bool) -> str:
        return "met" if ok else ("missed" if exact else "undetermined")

    return {"ratio": ratio, "fewer": fewer, "exact": exact,
            "claim_40pct_fewer": verdict(fewer >= FEWER_TARGET - 1e-12),
            "aim_4x": verdict(ratio >= AIM_RATIO - 1e-12)}


def _eval_planning(inv: Invocation, sec: EvalSection, out: Path, network=None) -> dict:
    from rich.console import Console
    from rich.table import Table

    from planning.evaluation import plot_planning_eval, run_planning_eval, standard_evaluators
    from sim.layout import generate_layout

    names = sec.evaluator_names()
    layout = generate_layout(inv.app.layout)
    result = run_planning_eval(layout, standard_evaluators(names, network=network), sims=sec.sims,
                               n_situations=sec.situations, seed=inv.app.seed)
    plot_planning_eval(result, str(out / "planning.png"))
    d = result.to_dict()
    table = Table(title=f"planning: mean return vs simulations ({sec.situations} situations, seed {inv.app.seed})")
    table.add_column("sims", justify="right")
    for n in names:
        table.add_column(n, justify="right")
    for j, s in enumerate(result.sims):
        table.add_row(str(s), *[f"{result.mean_return[n][j]:.3f} ± {result.stderr[n][j]:.3f}" for n in names])
    eff = planning_efficiency(result)
    fmt = lambda v: str(v) if v is not None else f">{eff['max_sims']}"
    table.add_row("sims for 95%", *[fmt(eff["span"]["sims"][n]) for n in names])
    Console().print(table)
    for reading in ("span", "of_best"):
        cmp = eff[reading].get("network_vs_rollout")
        if cmp is not None and cmp["ratio"] is not None:
            bound = "" if cmp["exact"] else ">= "
            print(f"planning efficiency ({reading}): network needs {bound}{cmp['ratio']:.2f}x fewer simulations "
                  f"than rollouts ({bound}{100 * cmp['fewer']:.1f}% fewer): 40% claim {cmp['claim_40pct_fewer']}, "
                  f"4x aim {cmp['aim_4x']}")
        elif cmp is not None:
            print(f"planning efficiency ({reading}): the network never reached 95% of the best return "
                  f"within {eff['max_sims']} simulations: 40% claim {cmp['claim_40pct_fewer']}")
    return {"task": "planning", "result": d, "efficiency": eff}


@register_verb("eval", "evaluate a part side by side: task=localization (EKF/UKF/dead reckoning) "
               "or task=planning (return vs simulations per evaluator)", config_name="eval", section=EvalSection)
def eval_verb(inv: Invocation) -> int:
    """``forklift eval``: writes config.yaml, report.json and a PNG to the run dir."""

    from agent.report import versions, write_report

    sec: EvalSection = inv.section
    out = inv.out_dir
    if sec.task in ("fleet", "continual"):
        if sec.task == "fleet":
            from agent.eval_fleet import eval_fleet as run_task
        else:
            from agent.eval_continual import eval_continual as run_task

        body = run_task(inv, sec, lambda: out_dir_ready(out, inv))
        body.update(config=inv.config, seed=inv.app.seed, versions=versions())
        write_report(out / "report.json", body)
        print(f"wrote config.yaml, report.json, {', '.join(body['files'])} to {out}")
        return 0
    if sec.task == "planning":
        network = _network_evaluator(sec.checkpoint) if "network" in sec.evaluator_names() else None
        body = _eval_planning(inv, sec, out_dir_ready(out, inv), network)
    else:
        body = _eval_localization(inv, sec, out_dir_ready(out, inv))
    body.update(config=inv.config, seed=inv.app.seed, versions=versions())
    write_report(out / "report.json", body)
    print(f"wrote config.yaml, report.json, {sec.task}.png to {out}")
    return 0


def out_dir_ready(out: Path, inv: Invocation) -> Path:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(inv.config, sort_keys=False))
    return out
