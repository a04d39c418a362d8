"""``forklift run``: seeded simulated episodes with a controller; KPI table and report."""

from __future__ import annotations

from agent.config import to_run_config
from agent.planners import controller_factory, online_controller_factory
from agent.verbs import Invocation, register_verb

__all__ = ["controller_factory", "run_verb"]  # controller_factory re-exported from agent.planners


@register_verb("run", "run simulated warehouse episodes with a controller; KPI table and report")
def run_verb(inv: Invocation) -> int:
    """``forklift run``: episodes -> KPI table, report.json, trajectories.png, episode_0.gif."""
    import yaml
    from rich.console import Console

    from agent.report import build_report, kpi_table, save_gif, save_trajectory_plot, write_report
    from agent.runner import run_episodes

    console = Console()
    cfg = to_run_config(inv.app)
    hook = None
    if inv.app.learning.online:  # agents of every episode share one online learner (docs/ONLINE.md)
        factory, hook = online_controller_factory(inv.app)
    else:
        factory = controller_factory(inv.app)  # planner=<name> (agent.planners)
    out = inv.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(inv.config, sort_keys=False))
    recorder = None
    if inv.app.record == "bag":  # episode 0 as a rosbag2 MCAP (agent/recording.py)
        from agent.recording import BagRecorder, recording_factory

        recorder = BagRecorder(out / "episode_0_bag", inv.app.ros)
        factory = recording_factory(factory, recorder)
    try:
        result = run_episodes(cfg, factory, progress=True)
    finally:
        if hook is not None:
            hook.close()
        if recorder is not None:
            recorder.close()
    console.print(kpi_table([result]))
    report = build_report([result], inv.config, seeds=cfg.seeds)
    written = ["config.yaml", "report.json", "trajectories.png"]
    if recorder is not None:
        written.append(f"episode_0_bag/ ({recorder.count} messages, MCAP)")
    if hook is not None:
        report["online"] = hook.summary()
        saved = hook.save(out / "online")
        written += [f"online/{p.name}" for p in saved.values()]
        s = report["online"]["stats"]
        console.print(f"online learning: {s['observed']} transitions observed, {s['updates']} updates, "
                      f"{s['swaps']} swaps, {s['rollbacks']} rollbacks, production version {report['online']['version']}"
                      + (", learner crashed (agent kept its weights)" if report["online"]["crashed"] else ""))
    write_report(out / "report.json", report)
    save_trajectory_plot(result, out / "trajectories.png")
    frames = result.episodes[0].frames if result.episodes else ()
    if cfg.video and frames:
        save_gif(frames, out / "episode_0.gif", fps=inv.app.sim.world.control_hz / cfg.video_every)
        written.append("episode_0.gif")
    ticks = sum(e.ticks for e in result.episodes)
    console.print(f"{len(result.episodes)} episode(s), {ticks} control ticks in {result.wall_s:.1f} s wall "
                  f"({ticks / max(result.wall_s, 1e-9):.0f} ticks/s); wrote {', '.join(written)} to {out}")
    return 0
