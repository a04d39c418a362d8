"""Baseline navigation: safety stop, move_base-style recovery (wait, clear, replan, abort),
cell locks between robots. Kinematic unicycle world with synthetic lidar returns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.navigation import NavConfig, Navigator, NavStatus, RecoveryConfig, simple_route
from agent.traffic import CellLocks
from planning import Reservations
from sim.follower import unicycle_step
from sim.layout import Layout, load_movingai
from sim.safety import SafetyConfig, rotation_clear, safe_speed, scan_points
from sim.types import LidarScan, MacroAction

DT = 0.05
PALLET_HALF = 0.42


def make_layout(tmp_path, rows: list[str]) -> Layout:
    p = tmp_path / "m.map"
    p.write_text(f"type octile\nheight {len(rows)}\nwidth {len(rows[0])}\nmap\n" + "\n".join(rows) + "\n")
    return load_movingai(p, n_stations=1, n_chargers=0)


def box_points(centres: np.ndarray, half: float, step: float = 0.02) -> np.ndarray:
    """World points [N, 2] on the outline of axis-aligned squares."""
    s = np.arange(-half, half + 1e-9, step)
    edge = np.concatenate([np.stack([s, np.full_like(s, -half)], 1), np.stack([s, np.full_like(s, half)], 1),
                           np.stack([np.full_like(s, -half), s], 1), np.stack([np.full_like(s, half), s], 1)])
    return (centres[:, None, :] + edge[None]).reshape(-1, 2) if len(centres) else np.zeros((0, 2))


def scan(pose: np.ndarray, world_pts: np.ndarray) -> np.ndarray:
    """Robot-frame points of ``world_pts`` within 10 m (no occlusion)."""
    d = world_pts - pose[:2]
    c, s = np.cos(pose[2]), np.sin(pose[2])
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=-1)
    return local[np.hypot(local[:, 0], local[:, 1]) < 10.0]


class World:
    """Navigators driving unicycles among square pallets (cells) in a layout."""

    def __init__(self, layout: Layout, starts: list[tuple[int, int]], cfg: NavConfig | None = None) -> None:
        self.layout = layout
        self.res, self.locks = Reservations(), CellLocks()
        self.cfg = cfg or NavConfig()
        self.navs = [Navigator(i, layout, self.res, self.locks, self.cfg) for i in range(len(starts))]
        self.poses = [np.r_[layout.cell_to_xy(np.array(c)), 0.0] for c in starts]
        self.v = [0.0] * len(starts)
        self.pallets: set[tuple[int, int]] = set()
        self.t = 0.0
        self.min_gap_robots = np.inf
        self.min_gap_pallet = np.inf
        for nav, p in zip(self.navs, self.poses):
            nav.park(p, 0.0)

    def obstacles_for(self, i: int) -> np.ndarray:
        cells = np.array(sorted(self.pallets), dtype=float).reshape(-1, 2)
        pts = [box_points(self.layout.cell_to_xy(cells), PALLET_HALF)]
        others = np.array([p[:2] for j, p in enumerate(self.poses) if j != i]).reshape(-1, 2)
        pts.append(box_points(others, 0.3))
        return np.concatenate(pts)

    def step(self) -> None:
        for i, nav in enumerate(self.navs):
            cmd = nav.step(self.poses[i], self.v[i], scan(self.poses[i], self.obstacles_for(i)), self.t)
            self.poses[i] = unicycle_step(self.poses[i], cmd, DT)
            self.v[i] = cmd.v
        self.t += DT
        xy = np.array([p[:2] for p in self.poses])
        for i in range(len(xy)):
            for j in range(i + 1, len(xy)):
                self.min_gap_robots = min(self.min_gap_robots, float(np.max(np.abs(xy[i] - xy[j]))) - 0.6)
            for c in self.pallets:
                gap = float(np.max(np.abs(xy[i] - self.layout.cell_to_xy(np.array(c))))) - 0.3 - PALLET_HALF
                self.min_gap_pallet = min(self.min_gap_pallet, gap)

    def run_until(self, t_end: float, done=None) -> None:
        while self.t < t_end:
            self.step()
            if done is not None and done(self):
                return


def arrived_or_failed(w: World) -> bool:
    return all(n.status in (NavStatus.ARRIVED, NavStatus.FAILED) for n in w.navs)


OPEN = [".........", ".........", "........."]  # 3 lanes
CORRIDOR = ["........."]  # 1 lane, nowhere to go around


def test_navigation__reaches_goal_on_an_empty_floor(tmp_path):
    lay = make_layout(tmp_path, OPEN)
    w = World(lay, [(2, 1)])
    assert w.navs[0].set_goal((2, 9), w.poses[0], 0.0)
    w.run_until(30.0, arrived_or_failed)
    assert w.navs[0].status == NavStatus.ARRIVED
    assert np.hypot(*(w.poses[0][:2] - lay.cell_to_xy(np.array((2, 9))))) < 0.06


def test_navigation__waits_for_a_short_blockage_without_recovery(tmp_path):
    lay = make_layout(tmp_path, OPEN)
    w = World(lay, [(2, 1)])
    w.pallets = {(2, 5)}
    w.navs[0].set_goal((2, 9), w.poses[0], 0.0)
    w.run_until(6.0)
    assert w.v[0] == 0.0 and w.navs[0].n_recoveries == 0  # stopped in front, still patient
    w.pallets = set()
    w.run_until(30.0, arrived_or_failed)
    assert w.navs[0].status == NavStatus.ARRIVED and w.navs[0].n_recoveries == 0
    assert w.min_gap_pallet > 0.05


def test_navigation__clears_blocked_cell_and_replans_around(tmp_path):
    lay = make_layout(tmp_path, OPEN)
    w = World(lay, [(2, 1)])
    w.pallets = {(2, 5)}
    nav = w.navs[0]
    nav.set_goal((2, 9), w.poses[0], 0.0)
    assert (2, 5) in nav.route
    w.run_until(40.0, lambda w: nav.n_recoveries > 0)
    t_recover = w.t
    assert nav.n_recoveries == 1 and (2, 5) in nav.cleared
    assert (2, 5) not in nav.route  # replanned around the cleared cell
    assert t_recover >= nav.cfg.recovery.patience_s
    w.run_until(60.0, arrived_or_failed)
    assert nav.status == NavStatus.ARRIVED
    assert w.min_gap_pallet > 0.05  # never drove into the pallet


def test_navigation__aborts_when_no_route_exists(tmp_path):
    lay = make_layout(tmp_path, CORRIDOR)
    # the warning field (slow approach to the pallet) is off: the time counted is recovery only
    cfg = NavConfig(recovery=RecoveryConfig(patience_s=2.0, max_replans=2),
                    safety=SafetyConfig(warning_length_m=0.0))
    w = World(lay, [(1, 1)], cfg)
    w.pallets = {(1, 5)}
    nav = w.navs[0]
    nav.set_goal((1, 9), w.poses[0], 0.0)
    w.run_until(60.0, arrived_or_failed)
    assert nav.status == NavStatus.FAILED
    assert nav.n_recoveries == cfg.recovery.max_replans + 1
    assert w.t == pytest.approx((cfg.recovery.max_replans + 1) * cfg.recovery.patience_s, abs=4.0)
    assert w.min_gap_pallet > 0.05


def test_navigation__robots_never_share_a_cell_and_pass_each_other(tmp_path):
    lay = make_layout(tmp_path, OPEN)
    w = World(lay, [(2, 1), (2, 9)])
    w.navs[0].set_goal((2, 9), w.poses[0], 0.0)
    w.navs[1].set_goal((2, 1), w.poses[1], 0.0)
    w.run_until(90.0, arrived_or_failed)
    assert [n.status for n in w.navs] == [NavStatus.ARRIVED, NavStatus.ARRIVED]
    assert w.min_gap_robots > 0.0


def test_navigation__head_on_in_a_corridor_gives_up_without_contact(tmp_path):
    lay = make_layout(tmp_path, CORRIDOR)
    cfg = NavConfig(recovery=RecoveryConfig(patience_s=2.0, max_replans=1))
    w = World(lay, [(1, 1), (1, 9)], cfg)
    w.navs[0].set_goal((1, 9), w.poses[0], 0.0)
    w.navs[1].set_goal((1, 1), w.poses[1], 0.0)
    w.run_until(60.0, arrived_or_failed)
    assert all(n.status == NavStatus.FAILED for n in w.navs)
    assert w.min_gap_robots > 0.0


@pytest.mark.parametrize("cells,expected", [
    ([(0, 0), (0, 1), (0, 1), (0, 2)], [(0, 0), (0, 1), (0, 2)]),  # wait dropped
    ([(0, 0), (0, 1), (1, 1), (0, 1), (0, 2)], [(0, 0), (0, 1), (0, 2)]),  # detour erased
    ([(0, 0), (0, 1), (0, 0), (0, 1)], [(0, 0), (0, 1)]),
    ([(3, 3)], [(3, 3)]),
])
def test_navigation__simple_route_erases_waits_and_loops(cells, expected):
    assert simple_route(cells) == expected


def test_locks__exclusive_and_released():
    locks = CellLocks()
    assert locks.acquire(0, [(0, 0), (0, 1)]) == 2
    assert locks.acquire(1, [(0, 2), (0, 1), (0, 3)]) == 1
    locks.keep_only(0, [(0, 0)])
    assert locks.holder((0, 1)) is None and locks.acquire(1, [(0, 1)]) == 1
    locks.release(1)
    assert locks.held_by(1) == set() and locks.holder((0, 2)) is None


def test_safety__stops_before_obstacle_in_corridor_only():
    cfg = SafetyConfig()
    ahead = np.array([[0.3 + cfg.stop_margin_m - 0.01, 0.0]])
    beside = np.array([[0.6, 0.5]])  # a shelf beside the aisle
    assert safe_speed(ahead, cfg, check_len_m=2.0, dt=DT) == 0.0
    assert safe_speed(beside, cfg, check_len_m=2.0, dt=DT) == float("inf")
    assert safe_speed(np.array([[1.5, 0.0]]), cfg, check_len_m=0.2, dt=DT) == float("inf")  # beyond check
    assert safe_speed(None, cfg, check_len_m=2.0, dt=DT) == cfg.blind_speed_cap


def test_safety__warning_field_slows_for_what_is_not_a_shelf(tmp_path):
    """A person beside the corridor ahead (about to step in) caps the speed; a shelf there does not."""
    from sim.safety import LidarGuard

    lay = make_layout(tmp_path, JUNCTION)
    cfg = SafetyConfig()
    guard = LidarGuard(lay, cfg, DT)
    centre = lay.cell_to_xy(np.array([2, 4]))  # in the aisle, heading east, the side lane joins at (2, 5)
    pose = np.array([centre[0], centre[1], 0.0])
    assert lay.free[3, 5] and not lay.free[3, 4]
    person = np.array([[1.0, 1.0]])  # robot frame: ahead and to the left, in the side lane (3, 5)
    assert guard.warning_cap(pose, person) == cfg.warning_speed
    assert guard.speed_cap(pose, 1.5, person, 0.0, straight_m=5.0) == cfg.warning_speed
    shelf = np.array([[0.6, 0.55]])  # the face of the shelf cell (3, 4) beside the aisle
    assert guard.warning_cap(pose, shelf) == float("inf")
    assert guard.warning_cap(pose, np.array([[2.5, 0.0]])) == float("inf")  # beyond the field
    off = LidarGuard(lay, SafetyConfig(warning_length_m=0.0), DT)
    assert off.warning_cap(pose, person) == float("inf")


def test_guarded_executor__the_agent_and_the_envs_drive_under_the_lidar_guard(tmp_path):
    """``sim.env_parts.GuardedExecutor`` (the agent's and the RL envs' driver) slows for a
    person in the warning field, where the bare macro executor drives on."""
    from sim.env_core import EnvConfig
    from sim.env_parts import GuardedExecutor, MacroExecutor

    lay = make_layout(tmp_path, ["........", "........", "........", "........", "........"])
    start = lay.cell_to_xy(np.array([3, 2]))
    pose = np.array([start[0], start[1], 0.0])  # heading +x = east = column + 1
    person = np.array([1.0, 0.9])  # robot frame: ahead, left of the corridor, in free floor
    ang = np.array([math.atan2(person[1], person[0])])
    scan = LidarScan(angles=ang, ranges=np.array([float(np.hypot(*person))]), range_max=10.0)
    guarded = GuardedExecutor(lay, DT, safety=SafetyConfig())
    bare = MacroExecutor(lay, DT)
    for ex in (guarded, bare):
        ex.start(MacroAction.EAST, pose)
        assert ex.target == (3, 3)
    v_g = guarded.drive(pose, (3, 2), scan, 0.0, v_current=1.0).v
    v_b = bare.command(pose, scan, v_current=1.0).v
    assert v_g <= SafetyConfig().warning_speed + 1e-9 < v_b
    assert EnvConfig().safety == SafetyConfig()  # the envs default to the agent's guard


def test_macro_executor__shorten_ends_a_straight_run_at_the_first_cell_it_can_stop_at(tmp_path):
    """A straight run cut short at speed (the goal changed under it) ends at the nearest cell
    centre ahead that braking at the follower's max_accel reaches: it stops there, centred,
    never overshooting it, and much earlier than the full run; a run that cannot be cut
    (already braking into its last cell) keeps its target."""
    from sim.env_parts import MacroExecutor

    lay = make_layout(tmp_path, ["..........", "..........", ".........."])
    ex = MacroExecutor(lay, DT)
    start = lay.cell_to_xy(np.array([1, 1]))
    pose = np.array([start[0], start[1], 0.0])
    ex.start(MacroAction.EAST, pose)
    ex._goto((1, 8), start)  # a long straight
    ex._ticks_left = 400
    v = 0.0
    for _ in range(30):  # 1.5 s: at cruise speed
        cmd = ex.command(pose, None, v_current=v)
        pose, v = unicycle_step(pose, cmd, DT), cmd.v
    assert v > 1.0 and ex.busy
    brake = v**2 / (2 * ex.follower.cfg.max_accel)
    x_cut = pose[0]
    assert ex.shorten(pose, v)
    new_x = lay.cell_to_xy(np.array(ex.target))[0]
    assert ex.target[0] == 1 and 1 < ex.target[1] < 8
    assert new_x - x_cut >= brake - 1e-9  # reachable with the brakes
    assert new_x - x_cut < brake + lay.cell_size  # and the first such cell
    x_max = pose[0]
    while ex.busy:
        cmd = ex.command(pose, None, v_current=v)
        pose, v = unicycle_step(pose, cmd, DT), cmd.v
        x_max = max(x_max, pose[0])
    assert ex.outcome.name == "ARRIVED"
    assert abs(pose[0] - new_x) < 0.1 and x_max < new_x + 0.1
    assert not ex.shorten(pose, 0.0)  # nothing running

    ex.start(MacroAction.EAST, np.array([start[0], start[1], 0.0]))  # a 1-cell move: nothing to cut
    assert not ex.shorten(np.array([start[0] + 0.3, start[1], 0.0]), 1.0) and ex.target == (1, 2)


def test_macro_executor__shorten_at_brake_point_stops_where_braking_ends_off_centre(tmp_path):
    """``at_brake_point`` (a new goal behind on the line: a load dropped on the way): the run
    ends where braking from the current speed ends, before the next cell centre the
    centre-stop rule would pick, and the robot stands still there; a run that braking can
    no longer cut keeps its target."""
    from sim.env_parts import MacroExecutor

    lay = make_layout(tmp_path, ["..........", "..........", ".........."])
    ex = MacroExecutor(lay, DT)
    start = lay.cell_to_xy(np.array([1, 1]))
    pose = np.array([start[0], start[1], 0.0])
    ex.start(MacroAction.EAST, pose)
    ex._goto((1, 8), start)
    ex._ticks_left = 400
    v = 0.0
    for _ in range(30):
        cmd = ex.command(pose, None, v_current=v)
        pose, v = unicycle_step(pose, cmd, DT), cmd.v
    brake = v**2 / (2 * ex.follower.cfg.max_accel)
    x_cut = pose[0]
    centre_rule = MacroExecutor(lay, DT)  # the same run under the centre-stop rule
    centre_rule.start(MacroAction.EAST, np.array([start[0], start[1], 0.0]))
    centre_rule._goto((1, 8), start)
    assert centre_rule.shorten(pose, v)
    x_centre = lay.cell_to_xy(np.array(centre_rule.target))[0]
    assert ex.shorten(pose, v, at_brake_point=True)
    while ex.busy:
        cmd = ex.command(pose, None, v_current=v)
        pose, v = unicycle_step(pose, cmd, DT), cmd.v
    assert ex.outcome.name == "ARRIVED" and abs(v) < 1e-6
    assert abs(pose[0] - (x_cut + brake)) < 0.1  # stopped where braking ends
    assert pose[0] < x_centre - 0.1  # short of the centre the centre rule drives to
    assert tuple(int(c) for c in lay.xy_to_cell(pose[:2])) == ex.target

    ex.start(MacroAction.EAST, np.array([start[0], start[1], 0.0]))  # 1 cell, braking into its end
    near = np.array([start[0] + 0.8, start[1], 0.0])
    assert not ex.shorten(near, 1.0, at_brake_point=True) and ex.target == (1, 2)


def test_safety__rotation_circle():
    cfg = SafetyConfig()
    assert rotation_clear(np.array([[0.6, 0.0]]), cfg)
    assert not rotation_clear(np.array([[0.3, 0.3]]), cfg)
    assert rotation_clear(None, cfg)


def test_safety__scan_points_drop_invalid_beams():
    s = LidarScan(angles=np.array([0.0, np.pi / 2, np.pi]), ranges=np.array([1.0, np.inf, np.nan]), range_max=10.0)
    np.testing.assert_allclose(scan_points(s), [[1.0, 0.0]])
    assert scan_points(None) is None


# The loader adds a wall border and puts map row 0 on top: the aisle is row 2 (columns 1-9)
# and the side lane (rows 3-4, column 5) joins it at (2, 5) between shelves.
JUNCTION = ["@@@@.@@@@", "@@@@.@@@@", ".........", "@@@@@@@@@"]


def test_navigation__blind_junction_only_behind_a_shelf_corner(tmp_path):
    lay = make_layout(tmp_path, JUNCTION)
    assert lay.free[3, 5] and lay.free[2, 1:10].all() and not lay.free[3, 4]
    nav = World(lay, [(2, 1)]).navs[0]
    assert nav.blind_junction((2, 4), (2, 5))  # side lane (3, 5) hidden by the shelf at (3, 4)
    assert nav.blind_junction((2, 6), (2, 5))  # from the other side too
    assert nav.blind_junction((3, 5), (2, 5))  # leaving the side lane into the aisle
    assert not nav.blind_junction((2, 2), (2, 3))  # shelves on both sides: no lane joins
    open_nav = World(make_layout(tmp_path, OPEN), [(2, 1)]).navs[0]
    assert not any(open_nav.blind_junction((2, c), (2, c + 1)) for c in range(1, 9))  # open floor


def _speed_at_x(tmp_path, rows: list[str], x_front: float) -> float:
    """Drives along row 2 from column 1 to 9; the speed when the robot's front reaches x (m)."""
    w = World(make_layout(tmp_path, rows), [(2, 1)])
    assert w.navs[0].set_goal((2, 9), w.poses[0], 0.0)
    while w.poses[0][0] + 0.3 < x_front:
        w.step()
        assert w.t < 30.0
    return w.v[0]


def test_navigation__enters_blind_junction_at_junction_speed(tmp_path):
    cfg = SafetyConfig()
    edge = 5.0  # the junction cell (2, 5) spans x in [5, 6]
    assert _speed_at_x(tmp_path, JUNCTION, edge) <= cfg.junction_speed + 0.05
    # the same spot of an open floor (no hidden lane) is passed much faster
    assert _speed_at_x(tmp_path, OPEN, edge) > cfg.junction_speed + 0.5


def test_navigation__failed_lidar_is_a_protective_stop(tmp_path):
    lay = make_layout(tmp_path, OPEN)
    nav = Navigator(0, lay, Reservations(), CellLocks(), NavConfig())
    pose = np.r_[lay.cell_to_xy(np.array((2, 1))), 0.0]
    nav.park(pose, 0.0)
    assert nav.set_goal((2, 8), pose, 0.0)
    for k in range(40):  # 2 s blind: no motion at all
        cmd = nav.step(pose, 0.0, None, k * DT)
        assert cmd.v == 0.0 and cmd.w == 0.0
    assert nav.step(pose, 0.0, np.zeros((0, 2)), 2.0).v > 0.0  # lidar back, clear: drives
    behind = np.r_[pose[:2], np.pi]  # facing away from the goal: would turn in place
    for k in range(40):
        cmd = nav.step(behind, 0.0, None, 3.0 + k * DT)
        assert cmd.v == 0.0 and cmd.w == 0.0
    for k in range(400):  # a 20 s outage: waits for the sensor, never gives the goal up
        nav.step(behind, 0.0, None, 5.0 + k * DT)
    assert nav.status == NavStatus.BLOCKED and nav.replans == 0


def test_guarded_executor__a_short_straight_behind_is_driven_rear_first_under_a_rear_guard(tmp_path):
    """A move one cell behind the robot (a dropped load, a give-way) is backed up, not turned
    round: heading kept, speed within [-reverse_drive_speed, 0], arrived centred; the guard
    then looks behind (an obstacle behind stops it, one in front does not); a move to the side
    or one longer than ``reverse_max_m`` is driven forward, and ``reverse_max_m=0`` turns it off."""
    from dataclasses import replace

    from sim.env_parts import GuardedExecutor, MacroConfig

    lay = make_layout(tmp_path, ["..........", "..........", "..........", "..........", ".........."])
    c = lay.cell_to_xy(np.array([2, 5]))
    pose0 = np.array([c[0], c[1], 0.0])  # facing east; WEST is behind
    ex = GuardedExecutor(lay, DT, safety=SafetyConfig())
    ex.start(MacroAction.WEST, pose0)
    assert ex.follower.reversing and ex.target == (2, 4)
    pose, v, vs = pose0.copy(), 0.0, []
    clear = LidarScan(angles=np.linspace(-np.pi, np.pi, 36, endpoint=False), ranges=np.full(36, np.inf), range_max=10.0)
    for k in range(200):
        cell = tuple(int(x) for x in lay.xy_to_cell(pose[:2]))
        cmd = ex.drive(pose, cell, clear, k * DT, v_current=v)
        if not ex.busy:
            break
        pose, v = unicycle_step(pose, cmd, DT), cmd.v
        vs.append(cmd.v)
    assert ex.outcome.name == "ARRIVED"
    goal = lay.cell_to_xy(np.array([2, 4]))
    assert np.hypot(*(pose[:2] - goal)) < 0.06 and abs(pose[2]) < 0.05
    vcap = ex.follower.cfg.reverse_drive_speed
    assert min(vs) >= -vcap - 1e-9 and max(vs) <= 1e-9 and min(vs) < -0.9 * vcap

    def first_cmd(point):
        g = GuardedExecutor(lay, DT, safety=SafetyConfig())
        g.start(MacroAction.WEST, pose0)
        scan = LidarScan(angles=np.array([math.atan2(point[1], point[0])]), ranges=np.array([float(np.hypot(*point))]),
                         range_max=10.0)
        for k in range(10):  # from rest: the first half second
            cmd = g.drive(pose0, (2, 5), scan, k * DT, v_current=0.0)
        return cmd

    assert first_cmd((-0.5, 0.0)).v == 0.0  # 0.2 m behind the rear hull: stop
    assert first_cmd((0.5, 0.0)).v < 0.0  # the same obstacle in front: back away from it

    side = GuardedExecutor(lay, DT, safety=SafetyConfig())
    side.start(MacroAction.NORTH, pose0)
    assert not side.follower.reversing
    far = GuardedExecutor(lay, DT, safety=SafetyConfig())
    far._goto((2, 2), c, yaw=0.0)  # 3 m behind > reverse_max_m
    assert not far.follower.reversing
    far._goto((2, 3), c, yaw=0.0)  # 2 m: rear first
    assert far.follower.reversing
    off = GuardedExecutor(lay, DT, replace(MacroConfig(), reverse_max_m=0.0), safety=SafetyConfig())
    off.start(MacroAction.WEST, pose0)
    assert not off.follower.reversing


def test_safety__near_field_memory_is_kept_for_people_not_for_shelves(tmp_path):
    """Something seen within ``near_field_m`` of the front and then gone (into the blind zone
    at the hull) holds the robot for ``near_memory_s``; a shelf face there does not (a robot
    turning in place beside a shelf stood 2.5 s before an empty aisle: exceptions seed 7)."""
    from sim.safety import LidarGuard

    lay = make_layout(tmp_path, JUNCTION)
    cfg = SafetyConfig()
    assert lay.free[3, 5] and not lay.free[3, 4]

    def facing(cell, towards, offset):
        a, b = lay.cell_to_xy(np.array(cell)), lay.cell_to_xy(np.array(towards))
        u = (b - a) / np.hypot(*(b - a))
        xy = a + offset * u
        return np.array([xy[0], xy[1], math.atan2(u[1], u[0])])

    edge = 0.5 * lay.cell_size  # the next cell's edge, from the cell centre
    off = edge - cfg.footprint_m / 2 - 0.05  # front hull 5 cm from that edge: inside the near field
    point = np.array([[edge - off, 0.0]])  # robot frame: on the edge, straight ahead
    nothing = np.zeros((0, 2))

    person = LidarGuard(lay, cfg, DT)  # in the side lane (3, 5): nothing of the map there
    pose = facing((2, 5), (3, 5), off)
    assert person.near_field_cap(pose, point, 0.0) == float("inf")  # visible: the corridor check handles it
    assert person.near_field_cap(pose, nothing, 1.0) == 0.0  # vanished at the hull: hold
    assert person.near_field_cap(pose, nothing, 0.0 + cfg.near_memory_s + 0.1) == float("inf")

    shelf = LidarGuard(lay, cfg, DT)  # the face of the shelf cell (3, 4)
    pose = facing((2, 4), (3, 4), off)
    assert shelf.near_field_cap(pose, point, 0.0) == float("inf")
    assert shelf.near_field_cap(pose, nothing, 1.0) == float("inf")


def _agent_running_east(tmp_path, v: float, x_off: float):
    """An Agent (no network) with one robot on a long eastward straight at speed ``v``,
    ``x_off`` metres past its start (cell (1, 1)); its last goal was (1, 8)."""
    from agent.agent import Agent, AgentConfig
    from sim.env_parts import MacroExecutor

    lay = make_layout(tmp_path, ["..........", "..........", ".........."])
    agent = Agent(AgentConfig(planner="mcts_rollout"))
    agent.layout = lay
    ex = MacroExecutor(lay, DT)
    start = np.asarray(lay.cell_to_xy(np.array([1, 1])), dtype=np.float64)
    ex.start(MacroAction.EAST, np.array([start[0], start[1], 0.0]))
    ex._goto((1, 8), start)
    agent.execs, agent._v, agent._goal_cells = [ex], np.array([v]), [(1, 8)]
    return agent, ex, np.array([[start[0] + x_off, start[1], 0.0]])


def test_agent__a_goal_behind_on_the_line_stops_the_run_where_braking_ends(tmp_path):
    """The goal jumps behind the robot on its straight (a load dropped on the way): the run
    ends where braking ends (off centre), not at the next centre it can brake for; a new goal
    off the line keeps the centre rule; a run still at its start is cancelled at once."""
    agent, ex, pose = _agent_running_east(tmp_path, 1.5, 1.5)  # x = 3.0 at 1.5 m/s
    brake = 1.5**2 / (2 * ex.follower.cfg.max_accel)  # 1.125 m
    agent._retarget_on_goal_change([((1, 2), None, False, True)], pose)  # behind, on the line
    end = ex.follower._path[-1]
    assert ex.busy and abs(end[0] - (pose[0, 0] + brake + 0.02)) < 1e-6  # 4.145: off centre
    assert ex.target == (1, 4)

    agent, ex, pose = _agent_running_east(tmp_path, 1.5, 1.5)
    agent._retarget_on_goal_change([((2, 2), None, False, True)], pose)  # another row
    assert ex.target == (1, 4) and abs(ex.follower._path[-1][0] - 4.5) < 1e-6  # the centre rule

    agent, ex, pose = _agent_running_east(tmp_path, 0.0, 0.0)  # still at its start
    agent._retarget_on_goal_change([((1, 1), None, False, True)], pose)
    assert not ex.busy
