"""Reports of a run: KPI table (rich), ``report.json``, ``trajectories.png``, ``episode_0.gif``.

The table has one column per controller, so the full stack is shown beside the classic
baseline when both ran on the same seeds (:func:`kpi_table` takes several results).
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

__all__ = ["KPI_ROWS", "build_report", "kpi_table", "save_gif", "save_trajectory_plot", "versions",
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
