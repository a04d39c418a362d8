"""``forklift eval task=continual scenario=shift``: online learning on vs off while the site changes.

Three phases, the same seeds for both arms (``off``: the agent with its shipped weights;
``on``: the same agent hosting the online learner, :mod:`agent.online_hook`, whose learner
lives through all phases):

1. ``before``: ``continual.before`` episodes (seeds ``seed .. seed+before-1``) on the
   original site with the scenario's faults;
2. ``after``: ``continual.after`` episodes (seeds ``seed+before ..``) on the changed site:
   ``scenario.shift.closed_cells`` become walls (the robots' map is updated) and
   ``scenario.shift.faults`` replace the faults (the new blockage pattern);
3. ``retention``: the ``before`` episodes again (same seeds, original site) after the
   adaptation.

The arms alternate episode by episode (off, then on) so both see the same machine load;
the learner is paused while the off arm runs and learns only while its own robots work
(background worker process or thread, or one update per episode start with
``learning.background=false``). ``pause`` returns once the update under way (and, for a
worker process, its start-up) has finished, so the off arm never runs beside learner work.

Report (``report.json`` + a printed table): per arm and phase the pooled KPIs
(:func:`agent.report.fleet_summary`: completion rate with a bootstrap 95% CI, orders per
hour, collisions, decision latency p50/p99); ``adaptation``: completion per after-episode
(on vs off, the curve) and over the adapted half (the last ``ceil(after / 2)`` episodes);
``retention`` = completion(on, retention) / completion(on, before); latency p50/p99 on vs
off over all episodes; the learner's swaps, rejections and rollbacks with their evidence;
``targets`` (adapted completion clearly above off: on's CI lower bound above off's value;
retention >= 0.95; p99 on <= 1.10 x off) each with ``met`` true/false.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import ConfigError
from agent.eval_fleet import finite_json

__all__ = ["ContinualSection", "closed_layout", "eval_continual"]

PHASES: tuple[str, ...] = ("before", "after", "retention")
ARMS: tuple[str, ...] = ("off", "on")


@dataclass(frozen=True)
class ContinualSection:
    """``continual.*`` of ``forklift eval task=continual``.

    Attributes:
        before: episodes on the original site before the change (their seeds are replayed
            after the adaptation to measure retention).
        after: episodes on the changed site (the adaptation curve).
    """

    before: int = 1
    after: int = 3

    def check(self) -> None:
        """One-line :class:`ConfigError` for a bad count."""
        for name in ("before", "after"):
            if getattr(self, name) < 1:
                raise ConfigError(f"continual.{name}", "must be >= 1", getattr(self, name))


def closed_layout(layout: Any, cells: Sequence[Sequence[int]]) -> Any:
    """``layout`` with ``cells`` [(row, col), ...] closed for good (they become walls).

    Pick points and fiducials on closed cells are dropped; stations and chargers must stay
    open.

    Raises:
        ConfigError: (one line, ``scenario.shift.closed_cells``) a cell off the grid, not
            drivable today, a station / charger, or a site that no longer works
            (``Layout.validate``).
    """
    from sim.layout import Layout, LayoutError

    field_name = "scenario.shift.closed_cells"
    occ = np.array(layout.occupancy, copy=True)
    h, w = occ.shape
    special = {tuple(int(v) for v in c) for c in np.concatenate([layout.stations, layout.chargers])}
    for r, c in ((int(a), int(b)) for a, b in cells):
        if not (0 <= r < h and 0 <= c < w):
            raise ConfigError(field_name, f"[{r}, {c}] is off the {h} x {w} grid")
        if occ[r, c]:
            raise ConfigError(field_name, f"[{r}, {c}] is not a drivable cell of this layout")
        if (r, c) in special:
            raise ConfigError(field_name, f"[{r}, {c}] is a station or charger; allowed aisle cells")
        occ[r, c] = True
    keep_pick = ~occ[layout.pick_points[:, 0], layout.pick_points[:, 1]]
    fid = layout.xy_to_cell(layout.fiducials) if len(layout.fiducials) else np.zeros((0, 2), np.int64)
    keep_fid = ~occ[fid[:, 0], fid[:, 1]] if len(fid) else np.zeros(0, bool)
    fields = {f.name: np.array(getattr(layout, f.name)) for f in dataclasses.fields(Layout)
              if f.init and isinstance(getattr(layout, f.name), np.ndarray)}
    fields.update(occupancy=occ, pick_points=fields["pick_points"][keep_pick],
                  pick_shelf=fields["pick_shelf"][keep_pick], fiducials=fields["fiducials"][keep_fid])
    out = Layout(cell_size=layout.cell_size, name=f"{layout.name}+{len(cells)} closed", **fields)
    try:
        out.validate()
    except LayoutError as e:
        raise ConfigError(field_name, f"the site does not work with them closed ({e})") from None
    return out


@dataclass(frozen=True)
class _Slot:
    """One episode of the schedule (both arms run it)."""

    phase: str
    index: int  # within the phase
    seed: int
    changed: bool  # the changed site


def schedule(app: Any, sec: ContinualSection) -> list[_Slot]:
    """before (seed + k), after (seed + before + k), retention (the before seeds again)."""
    s = app.seed
    return ([_Slot("before", k, s + k, False) for k in range(sec.before)]
            + [_Slot("after", k, s + sec.before + k, True) for k in range(sec.after)]
            + [_Slot("retention", k, s + k, False) for k in range(sec.before)])


def _prepare(app: Any) -> tuple[Any, Any, Any]:
    """(original layout, changed layout, changed-site SimConfig) or a one-line ConfigError."""
    from agent.config import to_sim_config
    from agent.planners import ONLINE_PLANNERS
    from sim.config import validate
    from sim.layout import generate_layout

    if app.scenario.shift is None:
        raise ConfigError("scenario", "task=continual needs a site change; allowed shift (or a scenario with "
                          "a scenario.shift section)", app.scenario.name)
    if app.planner.name not in ONLINE_PLANNERS:
        raise ConfigError("planner", f"task=continual compares online learning on/off; allowed "
                          f"{', '.join(ONLINE_PLANNERS)}", app.planner.name)
    original = generate_layout(app.layout)
    changed = closed_layout(original, app.scenario.shift.closed_cells)
    sim_after = dataclasses.replace(to_sim_config(app), faults=app.scenario.shift.faults)
    try:
        validate(sim_after)
    except ValueError as e:
        raise ConfigError("", "scenario.shift." + str(e).splitlines()[0]) from None
    return original, changed, sim_after


def eval_continual(inv: Any, sec: Any, prepare_out: Callable[[], Path]) -> dict:
    """Run both arms through the three phases; returns the report body (see module docstring)."""
    from rich.console import Console

    from agent.config import to_run_config
    from agent.eval_parallel import TimedController
    from agent.planners import controller_factory, online_controller_factory
    from agent.runner import run_episode

    app, csec = inv.app, sec.continual
    csec.check()
    original, changed, sim_after = _prepare(app)
    off_factory = controller_factory(app, runtime="torch")  # same runtime as the online arm (torch)
    on_factory, hook = online_controller_factory(app, layout=original)
    out = prepare_out()
    console = Console(stderr=True)
    run_before = to_run_config(app)
    runs = {False: dataclasses.replace(run_before, episodes=1, video=False),
            True: dataclasses.replace(run_before, sim=sim_after, episodes=1, video=False)}
    slots = schedule(app, csec)
    results: dict[str, list[tuple[_Slot, Any, np.ndarray, dict]]] = {a: [] for a in ARMS}
    hook.learner.pause()
    try:
        for n, slot in enumerate(slots):
            for arm in ARMS:
                factory = on_factory if arm == "on" else off_factory
                ctrl = TimedController(factory())
                if arm == "on":
                    hook.learner.resume()
                rc = dataclasses.replace(runs[slot.changed], seed=slot.seed)
                ep = run_episode(rc, ctrl, 0, layout=changed if slot.changed else original)
                if arm == "on":
                    hook.learner.pause()
                    ep = dataclasses.replace(ep, episode=n)
                    info = {"version": int(hook.learner.version), "swaps": int(hook.learner.stats["swaps"]),
                            "rollbacks": int(hook.learner.stats["rollbacks"]),
                            "observed": int(hook.learner.stats["observed"])}
                else:
                    ep = dataclasses.replace(ep, episode=n)
                    info = {}
                results[arm].append((slot, ep, np.asarray(ctrl.latencies_ms), info))
                k = ep.kpis
                console.print(f"[{n + 1}/{len(slots)}] {slot.phase} seed {slot.seed} learning {arm}: completion "
                              f"{k['completion_rate']:.1%} ({k['orders_delivered_eligible']}/{k['orders_eligible']}), "
                              f"{k['orders_delivered']} delivered, {ep.wall_s:.0f} s wall"
                              + (f", learner v{info['version']} ({info['swaps']} swaps, {info['rollbacks']} rollbacks)"
                                 if info else ""))
    finally:
        hook.learner.resume()
        hook.close()
    body = summarize(app, sec, results, hook.summary(), original, changed)
    print_table(body)
    saved = hook.save(out / "online")
    body["files"] = [f"online/{p.name}" for p in saved.values()]
    return body


def summarize(app: Any, sec: Any, results: dict, online: dict, original: Any, changed: Any) -> dict:
    """The report body from the episodes of both arms (pure: tested on recorded results)."""
    from agent.report import fleet_summary

    csec = sec.continual

    def summ(rows: list) -> dict:
        return fleet_summary([r[1] for r in rows], [r[2] for r in rows], seed=app.seed, n_boot=sec.bootstrap)

    arms: dict[str, dict] = {}
    for arm in ARMS:
        rows = results[arm]
        arms[arm] = {"phases": {p: summ([r for r in rows if r[0].phase == p]) for p in PHASES},
                     "all": summ(rows),
                     "episodes": [{"phase": s.phase, "seed": s.seed, "changed_site": s.changed,
                                   "completion_rate": e.kpis["completion_rate"],
                                   "orders_eligible": e.kpis["orders_eligible"],
                                   "orders_delivered_eligible": e.kpis["orders_delivered_eligible"],
                                   "orders_delivered": e.kpis["orders_delivered"],
                                   "orders_per_hour": e.kpis["orders_per_hour"],
                                   "collisions": e.kpis["collisions"]["total"], "latency_ms": e.latency_ms,
                                   "wall_s": e.wall_s, **({"learner": info} if info else {})}
                                  for s, e, _, info in rows]}
    after_on = [e for e in arms["on"]["episodes"] if e["phase"] == "after"]
    after_off = [e for e in arms["off"]["episodes"] if e["phase"] == "after"]
    half = math.ceil(csec.after / 2)
    adapted = {a: summ([r for r in results[a] if r[0].phase == "after"][-half:]) for a in ARMS}
    c_on, c_off = adapted["on"]["completion_rate"], adapted["off"]["completion_rate"]
    ph_on = arms["on"]["phases"]
    before, after_ret = ph_on["before"]["completion_rate"]["value"], ph_on["retention"]["completion_rate"]["value"]
    retention = after_ret / before if before else None
    lat = {a: arms[a]["all"]["decision_latency_ms"] for a in ARMS}
    p99_ratio = lat["on"]["p99"] / lat["off"]["p99"] if lat["off"]["p99"] else None
    p50_ratio = lat["on"]["p50"] / lat["off"]["p50"] if lat["off"]["p50"] else None
    seeds = {a: [e["seed"] for e in arms[a]["episodes"]] for a in ARMS}
    targets = {
        "adaptation": {"rule": "adapted completion (on) 95% CI lower bound > off's completion",
                       "on": c_on["value"], "on_ci95": c_on["ci95"], "off": c_off["value"],
                       "met": bool(c_on["ci95"][0] is not None and c_off["value"] is not None
                                   and c_on["ci95"][0] > c_off["value"])},
        "retention": {"rule": "completion(on, retention) / completion(on, before) >= 0.95",
                      "value": retention, "met": bool(retention is not None and retention >= 0.95)},
        "latency": {"rule": "decision latency p99 on <= 1.10 x off", "p99_ratio": p99_ratio,
                    "met": bool(p99_ratio is not None and p99_ratio <= 1.10)},
    }
    return finite_json({
        "task": "continual", "scenario": app.scenario.name, "planner": app.planner.name,
        "n_robots": app.n_robots, "duration_s": app.duration_s,
        "episodes": {"before": csec.before, "after": csec.after, "retention": csec.before},
        "seeds": seeds, "same_seeds": seeds["on"] == seeds["off"],
        "site_change": {"closed_cells": [list(c) for c in app.scenario.shift.closed_cells],
                        "faults_after": dataclasses.asdict(app.scenario.shift.faults),
                        "layout_before": original.name, "layout_after": changed.name,
                        "pick_points": [int(len(original.pick_points)), int(len(changed.pick_points))]},
        "learning": {"background": app.learning.background, "worker": online.get("worker"),
                     "learner": dataclasses.asdict(app.learning.learner)},
        "arms": arms,
        "adaptation": {"curve": {"on": [e["completion_rate"] for e in after_on],
                                 "off": [e["completion_rate"] for e in after_off]},
                       "orders_delivered": {"on": [e["orders_delivered"] for e in after_on],
                                            "off": [e["orders_delivered"] for e in after_off]},
                       "adapted_episodes": half, "adapted": {a: adapted[a]["completion_rate"] for a in ARMS},
                       "orders_per_hour": {a: adapted[a]["orders_per_hour"]["mean"] for a in ARMS}},
        "retention": {"on": retention, "before": before, "after": after_ret,
                      "off": (arms["off"]["phases"]["retention"]["completion_rate"]["value"]
                              / arms["off"]["phases"]["before"]["completion_rate"]["value"]
                              if arms["off"]["phases"]["before"]["completion_rate"]["value"] else None)},
        "latency_ms": {"on": {"p50": lat["on"]["p50"], "p99": lat["on"]["p99"]},
                       "off": {"p50": lat["off"]["p50"], "p99": lat["off"]["p99"]},
                       "p50_ratio": p50_ratio, "p99_ratio": p99_ratio},
        "online": {"version": online["version"], "stats": online["stats"], "crashed": online["crashed"],
                   "hook_failed": online["hook_failed"], "swaps": online["swaps"], "rollbacks": online["rollbacks"],
                   "rejections": [e for e in online["log"] if e["event"] in ("reject", "discard")],
                   "log": online["log"], "kpi_reports": online["kpi_reports"]},
        "targets": targets,
    })


def print_table(body: dict) -> None:
    """The comparison table (stdout)."""
    from rich.console import Console
    from rich.table import Table

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v:.1%}"

    t = Table(title=f"continual: scenario={body['scenario']}, {body['n_robots']} robots, {body['duration_s']:.0f} s "
                    f"episodes, before/after/retention = {body['episodes']['before']}/{body['episodes']['after']}/"
                    f"{body['episodes']['retention']}, same seeds: {body['same_seeds']}")
    t.add_column("KPI")
    t.add_column("learning off", justify="right")
    t.add_column("learning on", justify="right")
    arms = body["arms"]
    for p in PHASES:
        cells = []
        for a in ARMS:
            c = arms[a]["phases"][p]["completion_rate"]
            cells.append(f"{pct(c['value'])} [{pct(c['ci95'][0])}, {pct(c['ci95'][1])}]")
        t.add_row(f"completion, {p}", *cells)
    ad = body["adaptation"]
    t.add_row("completion per after-episode", " ".join(pct(v) for v in ad["curve"]["off"]),
              " ".join(pct(v) for v in ad["curve"]["on"]))
    t.add_row(f"completion, adapted (last {ad['adapted_episodes']})", pct(ad["adapted"]["off"]["value"]),
              pct(ad["adapted"]["on"]["value"]))
    t.add_row("orders/hour, adapted", *(f"{ad['orders_per_hour'][a]:.1f}" if ad["orders_per_hour"][a] is not None
                                       else "-" for a in ARMS))
    t.add_row("retention (retention / before)", pct(body["retention"]["off"]), pct(body["retention"]["on"]))
    lat = body["latency_ms"]
    t.add_row("latency p50 / p99 (ms)", *(f"{lat[a]['p50']:.2f} / {lat[a]['p99']:.2f}" for a in ARMS))
    o = body["online"]
    t.add_row("swaps / rejections / rollbacks", "-",
              f"{len(o['swaps'])} / {len(o['rejections'])} / {len(o['rollbacks'])}")
    Console().print(t)
    for name, tg in body["targets"].items():
        print(f"target {name}: {'met' if tg['met'] else 'MISSED'} ({tg['rule']})")
