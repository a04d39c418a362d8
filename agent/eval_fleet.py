"""``forklift eval task=fleet``: planners side by side on the same seeds (report, plots, GIFs).

Each planner entry (``planners=[mcts_rl,classic,mcts_rollout@64]``) runs ``episodes``
seeded episodes (seed + k) of the configured scenario (:mod:`agent.eval_parallel`, serial
or on Ray). ``report.json`` gets a ``planners`` mapping, one :func:`agent.report.fleet_summary`
per entry (same keys) plus its per-episode KPIs, and a ``comparison`` against ``classic``
when it ran. Files: ``kpis.png``, ``exceptions.png`` (episode 0 of each planner),
``trajectories_<planner>.png`` and, with ``video=true``, ``episode_0_<planner>.gif``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["eval_fleet", "finite_json"]


def finite_json(o: Any) -> Any:
    """NaN/inf -> None, recursively (report.json stays valid JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_json(v) for v in o]
    return o


def _fname(label: str) -> str:
    return re.sub(r"[^\w.-]", "_", label)


def eval_fleet(inv: Any, sec: Any, prepare_out: Callable[[], Path]) -> dict:
    """Run the comparison; ``prepare_out`` creates the run dir once every planner was built."""
    from rich.console import Console
    from rich.table import Table

    from agent.eval_parallel import EpisodeTask, planner_factory, run_tasks
    from agent.report import (fleet_summary, save_exception_timeline, save_gif, save_kpi_comparison_plot,
                              save_trajectory_plot)
    from agent.runner import RunResult, aggregate_kpis
    from sim.layout import generate_layout

    app = inv.app
    entries = sec.planner_entries()
    for e in entries:  # one-line errors (unknown planner, bad weights) before anything is written
        planner_factory(e.app_for(app), e.name)
    out = prepare_out()
    tasks = [EpisodeTask(e, ep) for e in entries for ep in range(app.episodes)]
    results = run_tasks(app, tasks, workers=sec.eval.workers, address=sec.ray.address,
                        num_cpus=sec.ray.num_cpus, progress=True)
    layout = generate_layout(app.layout)
    planners: dict[str, dict] = {}
    files = ["kpis.png", "exceptions.png"]
    events0: dict[str, list] = {}
    for e in entries:
        mine = sorted((r for r in results if r.label == e.label), key=lambda r: r.result.episode)
        eps = [r.result for r in mine]
        summ = fleet_summary(eps, [r.latencies_ms for r in mine], seed=app.seed, n_boot=sec.bootstrap)
        summ.update(planner=e.name, controller=mine[0].name if mine else e.name,
                    num_simulations=e.num_simulations or app.planner.num_simulations,
                    wall_s=float(sum(x.wall_s for x in eps)),
                    per_episode=[{"episode": x.episode, "seed": x.seed, "kpis": x.kpis, "latency_ms": x.latency_ms,
                                  "ticks": x.ticks, "sim_s": x.sim_s, "wall_s": x.wall_s} for x in eps])
        planners[e.label] = finite_json(summ)
        events0[e.label] = eps[0].kpis.get("events", []) if eps else []
        rr = RunResult(controller=e.label, episodes=tuple(eps), aggregate=aggregate_kpis([x.kpis for x in eps]),
                       layout=layout, wall_s=summ["wall_s"])
        if eps:
            name = f"trajectories_{_fname(e.label)}.png"
            save_trajectory_plot(rr, out / name)
            files.append(name)
            if app.video and eps[0].frames:
                name = f"episode_0_{_fname(e.label)}.gif"
                save_gif(eps[0].frames, out / name, fps=app.sim.world.control_hz / app.video_every)
                files.append(name)
    title = (f"scenario={app.scenario.name}, {app.n_robots} robots, {app.episodes} episode(s) x "
             f"{app.duration_s:.0f} s, seeds {app.seed}..{app.seed + app.episodes - 1}")
    save_kpi_comparison_plot(planners, out / "kpis.png", title=title)
    save_exception_timeline(events0, out / "exceptions.png", n_robots=app.n_robots, duration_s=app.duration_s,
                            title=f"exceptions, episode 0 (seed {app.seed})")
    comparison: dict[str, Any] = {}
    if "classic" in planners:
        base = planners["classic"]["orders_per_hour"]["mean"]
        comparison = {"baseline": "classic", "orders_per_hour_ratio": {
            k: (v["orders_per_hour"]["mean"] / base if base and v["orders_per_hour"]["mean"] is not None else None)
            for k, v in planners.items()}}
    table = Table(title=title)
    table.add_column("KPI")
    for k in planners:
        table.add_column(k, justify="right")

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else fmt.format(v)

    rows = [
        ("completion rate", lambda s: f(s["completion_rate"]["value"], "{:.1%}") + " [" +
         f(s["completion_rate"]["ci95"][0], "{:.1%}") + ", " + f(s["completion_rate"]["ci95"][1], "{:.1%}") + "]"),
        ("orders / hour", lambda s: f(s["orders_per_hour"]["mean"], "{:.1f}")),
        ("orders delivered", lambda s: str(s["orders_delivered"]["total"])),
        ("exceptions", lambda s: str(s["exception_handling"]["overall"]["count"])),
        ("handling mean / p90 (s)", lambda s: f(s["exception_handling"]["overall"]["mean_s"], "{:.1f}") + " / " +
         f(s["exception_handling"]["overall"]["p90_s"], "{:.1f}")),
        ("collisions (total)", lambda s: str(s["collisions"]["total"]["total"])),
        ("  robot-robot", lambda s: str(s["collisions"]["robot_robot"]["total"])),
        ("localization RMSE (cm)", lambda s: f(None if s["localization_rmse"]["pos_m"] is None
                                                 else s["localization_rmse"]["pos_m"] * 100, "{:.1f}")),
        ("latency p50 / p99 (ms)", lambda s: f(s["decision_latency_ms"]["p50"], "{:.2f}") + " / " +
         f(s["decision_latency_ms"]["p99"], "{:.2f}")),
    ]
    for label, fn in rows:
        table.add_row(label, *(fn(s) for s in planners.values()))
    Console().print(table)
    return {"task": "fleet", "scenario": app.scenario.name, "n_robots": app.n_robots, "duration_s": app.duration_s,
            "episodes": app.episodes, "seeds": [app.seed + k for k in range(app.episodes)],
            "workers": sec.eval.workers, "planners": planners, "comparison": comparison, "files": files}
