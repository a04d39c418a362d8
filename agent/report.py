"""Reports of a run: KPI table (rich), ``report.json``, ``trajectories.png``, ``episode_0.gif``.

The table has one column per controller, so the full stack is shown beside the classic
baseline when both ran on the same seeds (:func:`kpi_table` takes several results).

Planner comparison (``forklift eval task=fleet``): :func:`fleet_summary` pools one
planner's episodes into the KPIs of the report's ``planners`` mapping (same keys for every
planner; undefined values are ``None``, never NaN); :func:`save_kpi_comparison_plot` and
:func:`save_exception_timeline` draw them side by side.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.runner import RunResult

__all__ = ["KPI_ROWS", "bootstrap_mean_ci", "bootstrap_ratio_ci", "build_report", "fleet_summary", "kpi_table",
           "save_exception_timeline", "save_gif", "save_kpi_comparison_plot", "save_trajectory_plot", "versions",
           "write_report"]

# (flattened KPI key, label, format); shown as mean ± std over episodes.
KPI_ROWS: tuple[tuple[str, str, str], ...] = (
    ("completion_rate", "completion rate", "{:.1%}"),
    ("orders_delivered", "orders delivered", "{:.1f}"),
    ("orders_released", "orders released", "{:.1f}"),
    ("orders_per_hour", "orders / hour", "{:.1f}"),
    ("orders_late", "orders late", "{:.1f}"),
    ("exceptions.overall.count", "exceptions", "{:.1f}"),
    ("exceptions.overall.mean_s", "exception handling (mean s)", "{:.1f}"),
    ("exceptions.overall.p50_s", "exception handling (p50 s)", "{:.1f}"),
    ("exceptions.overall.unresolved", "unresolved exceptions", "{:.1f}"),
    ("collisions.total", "collisions", "{:.1f}"),
    ("loc_rms_pos_m_all", "localization RMS (m)", "{:.3f}"),
    ("loc_rms_yaw_deg_all", "localization RMS (deg)", "{:.2f}"),
    ("distance_m.sum", "distance, fleet (m)", "{:.0f}"),
    ("latency_ms.p50", "decision latency p50 (ms)", "{:.2f}"),
    ("latency_ms.p99", "decision latency p99 (ms)", "{:.2f}"),
)


def _cell(agg: dict[str, dict[str, float]], key: str, fmt: str) -> str:
    if key not in agg:
        return "-"
    m, s = agg[key]["mean"], agg[key]["std"]
    return fmt.format(m) if s == 0 else f"{fmt.format(m)} ± {fmt.format(s)}"


def kpi_table(results: Sequence[RunResult], *, title: str | None = None) -> Any:
    """A rich table: one row per KPI, one column per controller (mean ± std over episodes)."""
    from rich.table import Table

    seeds = ", ".join(str(e.seed) for e in results[0].episodes) if results else ""
    table = Table(title=title or f"KPIs over {len(results[0].episodes) if results else 0} episode(s), seeds {seeds}")
    table.add_column("KPI")
    for r in results:
        table.add_column(r.controller, justify="right")
    rows = list(KPI_ROWS)
    kinds = sorted({k.split(".")[1] for r in results for k, v in r.aggregate.items()
                    if k.startswith("exceptions.") and k.endswith(".count") and v["max"] > 0} - {"overall"})
    for kind in kinds:
        rows.append((f"exceptions.{kind}.mean_s", f"  {kind} handling (mean s)", "{:.1f}"))
    for key, label, fmt in rows:
        table.add_row(label, *(_cell(r.aggregate, key, fmt) for r in results))
    return table


def versions() -> dict[str, str]:
    """Versions of forklift, python, numpy, torch, pybullet (``"missing"`` if not installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist, key in (("forklift", "forklift"), ("numpy", "numpy"), ("torch", "torch"), ("pybullet", "pybullet"),
                      ("hydra-core", "hydra")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "missing"
    return out


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD commit of the repository (with ``-dirty`` if the tree has changes), or None."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def build_report(results: Sequence[RunResult], config: dict, *, seeds: Sequence[int]) -> dict:
    """The JSON-able report: per controller, per-episode KPIs and aggregates; config; versions."""
    ctrls = {}
    for r in results:
        ctrls[r.controller] = {
            "aggregate": r.aggregate,
            "wall_s": r.wall_s,
            "episodes": [{"episode": e.episode, "seed": e.seed, "kpis": e.kpis, "latency_ms": e.latency_ms,
                          "ticks": e.ticks, "sim_s": e.sim_s, "wall_s": e.wall_s} for e in r.episodes],
        }
    return {"seeds": list(seeds), "controllers": ctrls, "config": config, "versions": versions(),
            "git_commit": git_commit()}


def write_report(path: Path, report: dict) -> None:
    """Write ``report`` as indented JSON (numpy scalars converted)."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    path.write_text(json.dumps(report, indent=2, default=default) + "\n")


def save_trajectory_plot(result: RunResult, path: Path, *, episode: int = 0) -> None:
    """Layout (walls, shelves, stations, chargers) and every robot's ground-truth path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    lay = result.layout
    ep = result.episodes[episode]
    h, w = lay.shape
    cs = lay.cell_size
    grid = np.zeros((h, w), dtype=int)
    grid[lay.occupancy] = 1
    grid[lay.shelves] = 2
    fig, ax = plt.subplots(figsize=(max(4.0, w * 0.4), max(3.0, h * 0.4)), dpi=100)
    ax.imshow(grid, origin="lower", extent=(0, w * cs, 0, h * cs),
              cmap=ListedColormap(["#eceae0", "#3c3c42", "#a17142"]), vmin=0, vmax=2)
    st = lay.cell_to_xy(lay.stations)
    ch = lay.cell_to_xy(lay.chargers) if len(lay.chargers) else np.zeros((0, 2))
    ax.scatter(st[:, 0], st[:, 1], marker="s", s=120, c="#78be78", edgecolors="k", label="station", zorder=3)
    if len(ch):
        ax.scatter(ch[:, 0], ch[:, 1], marker="^", s=60, c="#78a0d7", edgecolors="k", label="charger", zorder=3)
    cmap = plt.get_cmap("tab10")
    traj = ep.trajectories  # [T, N, 3]
    for i in range(traj.shape[1]):
        ax.plot(traj[:, i, 0], traj[:, i, 1], lw=1.2, color=cmap(i % 10), alpha=0.85, label=f"robot {i}")
        ax.plot(traj[0, i, 0], traj[0, i, 1], "o", color=cmap(i % 10), ms=6, mec="k")
    ax.set_xlim(0, w * cs)
    ax.set_ylim(0, h * cs)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    k = ep.kpis
    ax.set_title(f"{result.controller}, episode {ep.episode} (seed {ep.seed}): "
                 f"{k.get('orders_delivered', 0)} delivered, completion {k.get('completion_rate', 0.0):.0%}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_gif(frames: Sequence[np.ndarray], path: Path, *, fps: float = 5.0) -> None:
    """Write frames [H, W, 3] uint8 as an endlessly looping GIF (imageio via ``sim.render``)."""
    from sim.render import write_gif

    write_gif(frames, path, fps=fps)


# ---- planner comparison (forklift eval task=fleet) ------------------------------------------

def _finite(v: float) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def bootstrap_ratio_ci(successes: np.ndarray, trials: np.ndarray, *, rng: np.random.Generator,
                       n_boot: int = 2000, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of a pooled rate sum(successes) / sum(trials) over episodes.

    Two-stage bootstrap: resample episodes with replacement (episode-to-episode variation),
    then each drawn episode's orders (binomial with its own rate), so the interval is not
    degenerate with one or two episodes.

    Args:
        successes, trials: [E] counts per episode (delivered, eligible orders).
        rng: seeded generator (the report is reproducible from the config's seed).

    Returns:
        (low, high), or (None, None) when no episode has a trial.
    """
    s, n = np.asarray(successes, dtype=np.int64), np.asarray(trials, dtype=np.int64)
    if n.sum() == 0:
        return None, None
    idx = rng.integers(0, len(n), size=(n_boot, len(n)))  # [B, E]
    p = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    draws = rng.binomial(n[idx], p[idx])  # [B, E]
    tot = n[idx].sum(axis=1)
    rates = np.where(tot > 0, draws.sum(axis=1) / np.maximum(tot, 1), np.nan)
    rates = rates[np.isfinite(rates)]
    a = (1.0 - level) / 2
    return float(np.quantile(rates, a)), float(np.quantile(rates, 1 - a))


def bootstrap_mean_ci(values: np.ndarray, *, rng: np.random.Generator, n_boot: int = 2000,
                      level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of the mean of per-episode values (degenerate with one episode)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return None, None
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    a = (1.0 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def _handling(events: Sequence[dict], t_end: Sequence[float]) -> dict[str, dict[str, float | int | None]]:
    """Per kind and overall (all kinds but ``people``): count, unresolved, mean_s, p90_s, max_s."""
    from sim.faults import EXCEPTION_KINDS
    from sim.kpis import handling_times

    rows: dict[str, list[float]] = {k: [] for k in EXCEPTION_KINDS}
    unres: dict[str, int] = dict.fromkeys(EXCEPTION_KINDS, 0)
    for ev, end in zip(events, t_end):
        res = np.nan if ev.get("resolved_t") is None else float(ev["resolved_t"])
        times, un = handling_times(np.array([float(ev["onset_t"])]), np.array([res]), float(end))
        kind = str(ev["kind"])
        rows.setdefault(kind, []).append(float(times[0]))
        unres[kind] = unres.get(kind, 0) + int(un[0])
    rows["overall"] = [t for k, v in rows.items() if k != "people" for t in v]
    unres["overall"] = sum(v for k, v in unres.items() if k != "people")
    out = {}
    for k, ts in rows.items():
        a = np.asarray(ts, dtype=np.float64)
        out[k] = {"count": len(a), "unresolved": int(unres.get(k, 0)),
                  "mean_s": float(a.mean()) if len(a) else None,
                  "p90_s": float(np.percentile(a, 90)) if len(a) else None,
                  "max_s": float(a.max()) if len(a) else None}
    return out


def fleet_summary(episodes: Sequence[Any], latencies_ms: Sequence[np.ndarray], *, seed: int,
                  n_boot: int = 2000) -> dict:
    """One planner's KPIs pooled over its episodes (the ``planners`` entry of report.json).

    Args:
        episodes: :class:`agent.runner.EpisodeResult` of one planner, same seeds as the others.
        latencies_ms: per episode, [T] wall ms of each fleet decision (``controller.act``).
        seed: seeds the bootstrap (reproducible report).
        n_boot: bootstrap resamples.

    Returns:
        Keys (every planner has all of them): episodes, seeds, completion_rate {value, ci95,
        per_episode, eligible, delivered}, orders_delivered, orders_per_hour {mean, std, ci95,
        per_episode}, orders_late, orders_expired, exception_handling {kind: {count, unresolved,
        mean_s, p90_s, max_s}} (+ overall), collisions {kind: {total, per_episode}},
        localization_rmse {pos_m, yaw_deg}, decision_latency_ms {p50, p99, mean, max, ticks},
        distance_m (fleet, per episode mean).
    """
    from sim.kpis import COLLISION_KINDS

    rng = np.random.default_rng(seed)
    k = [e.kpis for e in episodes]
    elig = np.array([x["orders_eligible"] for x in k], dtype=np.int64)
    done = np.array([x["orders_delivered_eligible"] for x in k], dtype=np.int64)
    lo, hi = bootstrap_ratio_ci(done, elig, rng=rng, n_boot=n_boot)
    oph = np.array([x["orders_per_hour"] for x in k], dtype=np.float64)
    oph_lo, oph_hi = bootstrap_mean_ci(oph, rng=rng, n_boot=n_boot)
    events = [ev for x in k for ev in x.get("events", [])]
    ends = [x["duration_s"] for x in k for _ in x.get("events", [])]
    coll = {c: {"total": int(sum(x["collisions"].get(c, 0) for x in k)),
                "per_episode": [int(x["collisions"].get(c, 0)) for x in k]} for c in (*COLLISION_KINDS, "total")}
    n_loc = np.array([sum(x["loc_samples"]) for x in k], dtype=np.float64)
    pos = np.array([x["loc_rms_pos_m_all"] for x in k]) ** 2
    yaw = np.array([x["loc_rms_yaw_deg_all"] for x in k]) ** 2
    w = n_loc.sum()
    lat = np.concatenate([np.asarray(a, dtype=np.float64) for a in latencies_ms]) if latencies_ms else np.zeros(0)
    return {
        "episodes": len(k),
        "seeds": [int(e.seed) for e in episodes],
        "completion_rate": {"value": float(done.sum() / elig.sum()) if elig.sum() else None,
                            "ci95": [lo, hi], "per_episode": [float(x["completion_rate"]) for x in k],
                            "eligible": int(elig.sum()), "delivered": int(done.sum())},
        "orders_delivered": {"total": int(sum(x["orders_delivered"] for x in k)),
                             "mean": float(np.mean([x["orders_delivered"] for x in k])) if k else None},
        "orders_per_hour": {"mean": float(oph.mean()) if len(oph) else None, "std": float(oph.std()) if len(oph) else None,
                            "ci95": [oph_lo, oph_hi], "per_episode": [float(v) for v in oph]},
        "orders_late": int(sum(x["orders_late"] for x in k)),
        "orders_expired": int(sum(x["orders_expired"] for x in k)),
        "exception_handling": _handling(events, ends),
        "collisions": coll,
        "localization_rmse": {"pos_m": _finite(np.sqrt((pos * n_loc).sum() / w)) if w else None,
                              "yaw_deg": _finite(np.sqrt((yaw * n_loc).sum() / w)) if w else None},
        "decision_latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                                "p99": float(np.percentile(lat, 99)) if len(lat) else None,
                                "mean": float(lat.mean()) if len(lat) else None,
                                "max": float(lat.max()) if len(lat) else None, "ticks": int(len(lat))},
        "distance_m": float(np.mean([sum(x["distance_m"]) for x in k])) if k else None,
    }


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def save_kpi_comparison_plot(summaries: dict[str, dict], path: Path, *, title: str = "") -> None:
    """Six panels, one bar per planner: completion (95% CI), orders/hour (95% CI), exception
    handling (mean, p90), collisions by kind (stacked), localization RMSE, decision latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.kpis import COLLISION_KINDS

    names = list(summaries)
    x = np.arange(len(names))
    cmap = plt.get_cmap("tab10")
    colors = [cmap(i % 10) for i in range(len(names))]
    fig, axes = plt.subplots(2, 3, figsize=(max(9.0, 2.2 * len(names) * 1.5), 6.5), dpi=100)

    def bars(ax: Any, vals: list[float], ci: list[list[float | None]] | None, label: str) -> None:
        v = np.array([_num(a) for a in vals])
        err = None
        if ci is not None:
            lo = np.array([_num(c[0]) for c in ci])
            hi = np.array([_num(c[1]) for c in ci])
            err = np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0.0)
        ax.bar(x, np.nan_to_num(v), yerr=err, color=colors, capsize=4)
        ax.set_xticks(x, names, rotation=20, fontsize=8)
        ax.set_title(label, fontsize=9)

    s = summaries
    bars(axes[0, 0], [s[n]["completion_rate"]["value"] for n in names], [s[n]["completion_rate"]["ci95"] for n in names],
         "completion rate (95% bootstrap CI)")
    axes[0, 0].set_ylim(0, 1.05)
    bars(axes[0, 1], [s[n]["orders_per_hour"]["mean"] for n in names], [s[n]["orders_per_hour"]["ci95"] for n in names],
         "orders / hour (95% CI over episodes)")
    ax = axes[0, 2]
    w = 0.38
    ax.bar(x - w / 2, [np.nan_to_num(_num(s[n]["exception_handling"]["overall"]["mean_s"])) for n in names], w,
           label="mean", color="#5b8bd0")
    ax.bar(x + w / 2, [np.nan_to_num(_num(s[n]["exception_handling"]["overall"]["p90_s"])) for n in names], w,
           label="p90", color="#d07b5b")
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_title("exception handling (s)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    bottom = np.zeros(len(names))
    for j, c in enumerate(COLLISION_KINDS):
        v = np.array([s[n]["collisions"][c]["total"] for n in names], dtype=float)
        ax.bar(x, v, bottom=bottom, label=c, color=cmap(j))
        bottom += v
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_title("collisions by kind (all episodes)", fontsize=9)
    ax.legend(fontsize=7)
    bars(axes[1, 1], [_num(s[n]["localization_rmse"]["pos_m"]) * 100 for n in names], None, "localization RMSE (cm)")
    ax = axes[1, 2]
    ax.bar(x - w / 2, [np.nan_to_num(_num(s[n]["decision_latency_ms"]["p50"])) for n in names], w, label="p50",
           color="#5b8bd0")
    ax.bar(x + w / 2, [np.nan_to_num(_num(s[n]["decision_latency_ms"]["p99"])) for n in names], w, label="p99",
           color="#d07b5b")
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_title("decision latency (ms, fleet per tick)", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_exception_timeline(events: dict[str, Sequence[dict]], path: Path, *, n_robots: int,
                            duration_s: float, title: str = "") -> None:
    """One panel per planner (one episode each): every exception as a bar from onset to
    resolution (hatched: unresolved at the end), one row per robot (site-wide ones on top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from sim.faults import EXCEPTION_KINDS

    cmap = plt.get_cmap("tab10")
    color = {k: cmap(i) for i, k in enumerate(EXCEPTION_KINDS)}
    names = list(events)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.2 + 0.28 * (n_robots + 1) * len(names)), dpi=100,
                             squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], names):
        for ev in events[name]:
            row = n_robots if ev.get("robot") is None else int(ev["robot"])
            t0 = float(ev["onset_t"])
            unres = ev.get("resolved_t") is None
            t1 = duration_s if unres else float(ev["resolved_t"])
            ax.barh(row, max(t1 - t0, duration_s / 400), left=t0, height=0.7,
                    color=color.get(str(ev["kind"]), "grey"), hatch="//" if unres else None, edgecolor="k", lw=0.4)
        ax.set_yticks(range(n_robots + 1), [f"robot {i}" for i in range(n_robots)] + ["site"], fontsize=6)
        ax.set_ylim(-0.6, n_robots + 0.6)
        ax.set_xlim(0, duration_s)
        ax.set_title(f"{name}: {len(events[name])} exception(s)", fontsize=9)
    axes[-1, 0].set_xlabel("sim time (s)")
    fig.legend(handles=[Patch(color=color[k], label=k) for k in EXCEPTION_KINDS] +
               [Patch(facecolor="white", edgecolor="k", hatch="//", label="unresolved")],
               loc="upper right", fontsize=7, ncol=4)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)
