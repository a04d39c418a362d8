"""The learned stack (agent.Agent) behind the planner registry, on the PyBullet warehouse."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from agent.agent import Agent, AgentConfig
from agent.cli import main
from agent.monitor import ExceptionMonitor
from agent.runner import RunConfig, run_episodes
from sim.config import SimConfig
from sim.types import Pose, SensorFrame


@pytest.mark.parametrize("planner", ["mcts_rl", "policy"])
def test_agent__learned_planner_delivers_without_collisions(planner):
    res = run_episodes(RunConfig(SimConfig(n_robots=2, duration_s=45.0), episodes=1, seed=0),
                       functools.partial(Agent, AgentConfig(planner=planner)), progress=False)
    k = res.episodes[0].kpis
    assert k["orders_delivered"] >= 1
    assert k["collisions"]["total"] == 0


def test_agent__same_seed_gives_identical_episodes():
    cfg = RunConfig(SimConfig(n_robots=2, duration_s=10.0), episodes=1, seed=2)
    f = functools.partial(Agent, AgentConfig(planner="mcts_rollout", num_simulations=8))
    a, b = (run_episodes(cfg, f, progress=False).episodes[0] for _ in range(2))
    np.testing.assert_array_equal(a.trajectories, b.trajectories)


@pytest.mark.parametrize("args,field", [
    (["planner=nope"], "planner"),
    (["learning.checkpoint=/nonexistent.safetensors"], "learning.checkpoint"),
])
def test_cli__bad_planner_or_checkpoint_is_one_line_exit_2(tmp_path, capsys, args, field):
    with pytest.raises(SystemExit) as e:
        main(["run", "+experiment=smoke", f"hydra.run.dir={tmp_path / 'o'}", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err
    assert not (tmp_path / "o" / "report.json").exists()


def _frame(t: float, *, lidar: bool = True, load: bool | None = None) -> SensorFrame:
    from sim.types import ImuReading, LidarScan, OdomReading

    scan = LidarScan(angles=np.zeros(1), ranges=np.ones(1), range_max=10.0) if lidar else None
    return SensorFrame(stamp=t, robot_id=0, odom=OdomReading(v=0.0, w=0.0, dt=0.05),
                       imu=ImuReading(gyro_z=0.0, accel=np.zeros(2)), lidar=scan, load=load)


def test_monitor__each_exception_kind_is_opened_and_resolved():
    try:
        _frame(0.0)
    except TypeError as e:  # the frame types' fields are the simulator's contract
        pytest.fail(f"SensorFrame parts changed: {e}")
    mon = ExceptionMonitor(1, stuck_s=2.0)
    ok, lost = Pose(0, 0, 0), Pose(0, 0, 0, health="lost")
    free = np.zeros((5, 5), bool)
    blocked = free.copy()
    blocked[1, 2] = True
    plan = [(1, 1), (1, 2), (1, 3)]
    mon.update(0.0, [_frame(0.0, load=True)], [ok], [(1, 1)], [plan], free, [True], [0])
    mon.update(1.0, [_frame(1.0, lidar=False, load=False)], [lost], [(1, 1)], [plan], blocked, [True], [0])
    mon.update(3.5, [_frame(3.5, load=False)], [lost], [(1, 1)], [plan], blocked, [True], [0])
    mon.update(5.0, [_frame(5.0, load=True)], [ok], [(1, 2)], [plan[1:]], free, [True], [0])
    log = {r["kind"]: r for r in mon.log()}
    assert set(log) == {"sensor_failed", "localization", "blocked_route", "load_dropped", "stuck"}
    assert log["sensor_failed"]["onset_t"] == 1.0 and log["sensor_failed"]["resolved_t"] == 3.5
    assert log["localization"]["duration_s"] == pytest.approx(4.0)
    assert log["blocked_route"]["resolved_t"] == 5.0 and log["load_dropped"]["resolved_t"] == 5.0
    assert log["stuck"]["onset_t"] == 3.5 and log["stuck"]["resolved_t"] == 5.0


def test_agent__a_broken_down_robot_hands_over_and_announces_only_its_cell():
    """A robot whose wheels stop turning while it is told to drive is down: its order goes
    back to the dispatcher and, until its wheels turn again, its announced route is the cell
    it stands in (the others plan around a parked robot; before, it announced a path home,
    and the fault injector dropped pallets on that route: 14.3 s blocked-aisle events)."""
    from sim.config import FaultsConfig, OrdersConfig
    from sim.faults import PlannedFault
    from sim.warehouse import WarehouseSim

    cfg = SimConfig(n_robots=2, duration_s=20.0, faults=FaultsConfig(enabled=True),
                    orders=OrdersConfig(rate_per_min=0.0, n_initial=2))
    plan = [PlannedFault(t=2.0, kind="breakdown", robot=0, duration=6.0)]
    sim = WarehouseSim(cfg, seed=0, fault_plan=plan)
    frames = sim.reset(0)
    agent = Agent(AgentConfig(planner="policy"))
    agent.reset(sim)
    order0 = None
    down, up_after = [], None
    while not sim.done and sim.time < 10.0:
        if sim.time < 2.0:
            order0 = agent.robots[0].order_id
        frames = sim.step(agent.act(frames, sim.time))
        st = sim.render_state()
        if agent._down[0]:
            down.append((sim.time, bool(st.broken[0]), st.routes[0].tolist(),
                         list(agent.robots[0].cell), agent.robots[0].order_id))
        elif down and up_after is None:
            up_after = sim.time
    sim.close()
    assert order0 is not None and down, "robot 0 had an order and was detected down"
    # detected within handover_after_s (+ the turn it was commanded), up within a tick or
    # two of the wheels turning again (the window ends at 8 s)
    assert 2.0 < down[0][0] < 4.0 and up_after is not None and 8.0 <= up_after <= 8.25
    assert all(broken for t, broken, *_ in down if t < 8.0)
    assert all(route == [cell] and oid is None for _t, _b, route, cell, oid in down)
