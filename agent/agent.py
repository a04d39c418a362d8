"""The full agent: perception -> belief -> batched MCTS (network prior + value) -> macro driver.

:class:`Agent` implements :class:`agent.control.Controller` for a whole fleet and sees the
site only through the :class:`agent.control.Fleet` protocol and sensor frames (the ROS
bridge can drive it unchanged). One control tick::

    frames --PoseSource (EKF)--> poses --BlockageDetector (lidar)--> blockages (with age)
        --> belief per robot (cell, load sensor, order, blockages, other robots' plans)
        --> at decision points (a robot's macro finished): ONE batched search over the grid
            model for all deciding robots (``planning.MCTS`` + evaluator) -> macro action
        --> safety filter (cell claims, lost pose, dead lidar) -> ``GuardedExecutor`` (macro
            driver under the lidar guard) -> twist
        --> bumper protective stop -> command

Decision points and the driver are those of the RL envs (``sim.env_parts.GuardedExecutor``:
one cell per move macro, under ``sim.safety.LidarGuard``), so a policy trained there runs
here unchanged.

Planners (:data:`PLANNERS`): ``mcts_rl`` (MCTS + policy/value network), ``mcts_rollout``
(MCTS + random rollouts), ``policy`` (network greedy, no search). The classic stack
(``classic``) is :class:`agent.baseline.BaselineController` behind the same registry
(:mod:`agent.planners`).

Safety rules every learned planner obeys (a planner cannot switch them off):
- a move may only start into a cell no other robot stands on or is moving into (cell
  claims; the grid model's move-conflict rule enforced in the physical world);
- a robot whose localization is ``lost`` or whose lidar is dead stands still (protective
  stop, ISO 3691-4), its macro cancelled;
- the contact bumper overrides everything (``sim.safety.bumper_command``).
"""

from __future__ import annotations

import dataclasses

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agent.control import LocalizationKind, PoseSource, make_pose_source
from agent.monitor import ExceptionMonitor
from agent.navigation import NavConfig
from sim.safety import BumperGuard
from sim.dispatch import dispatch_idle
from sim.follower import ramped_speed
from sim.types import MacroAction, Pose, SensorFrame, TwistCmd

__all__ = ["PLANNERS", "Agent", "AgentConfig", "PlannerKind"]

Cell = tuple[int, int]
STOP = TwistCmd(0.0, 0.0)
PlannerKind = Literal["mcts_rl", "mcts_rollout", "policy"]
PLANNERS: tuple[str, ...] = ("mcts_rl", "mcts_rollout", "policy")
_WAIT, _PICK, _DROP = int(MacroAction.WAIT), int(MacroAction.PICK), int(MacroAction.DROP)


@dataclass(frozen=True)
class AgentConfig:
    """The learned stack.

    Attributes:
        planner: ``mcts_rl`` | ``mcts_rollout`` | ``policy``.
        rule: MCTS root rule, ``gumbel`` or ``puct``.
        num_simulations: simulations per fleet decision (all deciding robots in one batch).
        max_depth: tree depth limit (grid steps).
        discount: per-step discount of the search.
        gumbel_scale: Gumbel noise (0 = deterministic evaluation mode).
        c_puct: PUCT exploration constant (``MCTSConfig.c1``).
        c_scale: Gumbel sigma(q) scale (``MCTSConfig.c_scale``): how far the searched Q
            values can overrule the prior at the root.
        rollout_depth: ``mcts_rollout``: grid steps per random rollout.
        checkpoint: network weights (.safetensors); None = the shipped weights.
        plan_horizon: steps of the other robots' announced plans the model replays.
        max_blockages: blockage slots per search root (the nearest are kept).
        dispatch_period_s: how often idle robots are matched with open orders (s).
        urgency_m_per_s: dispatcher ageing weight (m of detour per s an order waited).
        handling_retries: ticks a pick/drop is retried at its cell before re-approaching.
        handling_centre_m: a pick/drop that fails with the robot farther than this from its
            goal cell's centre (m; left off-centre by a protective stop, say) drives onto the
            centre first instead of retrying where it stands.
        handover_after_s: a robot whose wheels do not turn although it is told to drive
            (breakdown: odometry reads still for this long, s) hands its not-yet-carried
            order back to the dispatcher for another robot, and gets none until it moves.
        wait_s: a WAIT decision holds this long before the robot decides again (s).
        max_segment_cells: a move decision drives straight on along the plan for at most
            this many cells without stopping (one decision per straight run).
        localization: pose source kind.
        nav: follower limits and safety (shared with the classic stack's config).
        seed: base seed of the searches (decision k of an episode uses ``seed + k``).
        blockage_dwell_s, blockage_subdivision: ``perception.obstacles.BlockageConfig``.
    """

    planner: PlannerKind = "mcts_rl"
    rule: Literal["gumbel", "puct"] = "gumbel"
    num_simulations: int = 16
    max_depth: int = 24
    discount: float = 0.99
    gumbel_scale: float = 0.0
    c_puct: float = 1.25
    c_scale: float = 0.1
    rollout_depth: int = 20
    checkpoint: str | None = None
    plan_horizon: int = 24
    max_blockages: int = 8
    dispatch_period_s: float = 1.0
    urgency_m_per_s: float = 0.05
    handling_retries: int = 40
    handling_centre_m: float = 0.1
    handover_after_s: float = 1.0
    wait_s: float = 0.25
    max_segment_cells: int = 4
    localization: LocalizationKind = "ekf"
    nav: NavConfig = field(default_factory=NavConfig)
    seed: int = 0
    blockage_dwell_s: float = 1.0
    blockage_subdivision: int = 5


@dataclass
class _Robot:
    order_id: int | None = None
    home: Cell = (0, 0)
    attempts: int = 0
    cell: Cell = (0, 0)


class Agent:
    """Fleet controller of the learned stack (implements :class:`agent.control.Controller`).

    Args:
        cfg: configuration.
        evaluator: overrides the evaluator built from ``cfg`` (``mcts_rl`` / ``policy``);
            anything with ``evaluate(encoded) -> (logits [B, 7], values [B])``.
        pose_source: overrides the pose source built from ``cfg.localization``.
        online: an :class:`agent.online_hook.OnlineHook` (``learning=online``): searches use
            its evaluator and feed it their targets (it outlives the episode's agent).
    """

    def __init__(self, cfg: AgentConfig | None = None, *, evaluator: Any = None,
                 pose_source: PoseSource | None = None, online: Any = None) -> None:
        self.cfg = cfg or AgentConfig()
        self._online = online
        self.name = self.cfg.planner
        self.pose_source = pose_source or make_pose_source(self.cfg.localization)
        self._network = evaluator
        if self.cfg.planner in ("mcts_rl", "policy"):
            import torch

            # One intra-op thread: the decision runs on one core (the latency contract), and
            # on a loaded machine torch's thread pool thrashes (cProfile: 190 ms per 4-row forward;
            # a 60 s, 4-robot episode took 271 s wall with the pool, 51 s with one thread).
            torch.set_num_threads(1)
        if self._network is None and self.cfg.planner in ("mcts_rl", "policy"):
            from learning.evaluator import load_network_evaluator

            self._network = load_network_evaluator(self.cfg.checkpoint)
        self.fleet: Any = None
        self.decisions = 0
        self.search_ms: list[float] = []

    # ---- episode -----------------------------------------------------------------------
    def reset(self, fleet: Any) -> None:
        from perception.obstacles import BlockageConfig, BlockageDetector
        from planning import GridModel, GridModelConfig
        from sim.env_parts import GuardedExecutor, MacroConfig

        self.fleet, self.layout = fleet, fleet.layout
        self.pose_source.reset(fleet)
        if self._online is not None:
            self._online.reset(fleet)
        n = fleet.n_robots
        start = np.asarray(fleet.initial_poses(), dtype=np.float64)
        fcfg = self.cfg.nav.follower
        self.execs = [GuardedExecutor(self.layout, float(fleet.dt), MacroConfig(), follower=fcfg,
                                      safety=self.cfg.nav.safety) for _ in range(n)]
        homes = self.layout.xy_to_cell(start[:, :2])
        self.robots = [_Robot(home=(int(c[0]), int(c[1])), cell=(int(c[0]), int(c[1]))) for c in homes]
        self.detector = BlockageDetector(self.layout, BlockageConfig(
            dwell_s=self.cfg.blockage_dwell_s, subdivision=self.cfg.blockage_subdivision))
        self.model = GridModel(self.layout, GridModelConfig(horizon_steps=10_000))
        self.monitor = ExceptionMonitor(n)
        self._last_dispatch = -1e9
        self._v = np.zeros(n)
        self._w = np.zeros(n)
        self._stall = np.zeros(n)  # [N] s told to move while the wheels read still
        self._down = np.zeros(n, bool)  # [N] suspected breakdown (until the wheels turn)
        self._handover: set[int] = set()  # orders handed back, waiting for another robot
        self._bumpers = BumperGuard(n, self.cfg.nav.safety)
        self._free = self.layout.free
        self._claims: list[set[Cell]] = [{r.cell} for r in self.robots]
        self._path_cache: dict[tuple, list[Cell]] = {}
        self._plans: list[list[Cell]] = [[r.cell] for r in self.robots]
        self._goal_cells: list[Cell] | None = None  # last tick's goal cells
        self.decisions = 0
        self.search_ms = []

    # ---- control tick ------------------------------------------------------------------
    def act(self, frames: Sequence[SensorFrame], t: float) -> list[TwistCmd]:
        fleet = self.fleet
        poses = self.pose_source.update(frames)
        for i, p in enumerate(poses):
            fleet.report_pose_estimate(i, p)
        pose_arr = np.array([[p.x, p.y, p.yaw] for p in poses], dtype=np.float64)
        cells = self.layout.xy_to_cell(pose_arr[:, :2])
        for i, rs in enumerate(self.robots):
            rs.cell = (int(cells[i, 0]), int(cells[i, 1]))
        blocked = self._perceive(frames, poses, pose_arr, t)
        orders = {o.id: o for o in fleet.orders}
        if self._online is not None:
            self._online.tick(t, fleet.orders)
        self._watch_breakdowns(frames, orders, t)
        self._sync_orders(orders)
        if t - self._last_dispatch >= self.cfg.dispatch_period_s:
            self._last_dispatch = t
            self._dispatch(orders, blocked, t)
        goals = [self._goal(i, orders) for i in range(len(self.robots))]
        self._retarget_on_goal_change(goals, pose_arr)
        self._stop_before_blockage(blocked, pose_arr)
        self._goal_cells = [g[0] for g in goals]
        self._announce(goals, blocked)
        self.monitor.update(t, frames, poses, [r.cell for r in self.robots], self._plans, blocked,
                            [self._carrying(i, orders) for i in range(len(self.robots))],
                            [r.order_id for r in self.robots])
        deciding = []
        for i, ex in enumerate(self.execs):
            if self._must_stop(frames[i], poses[i]):
                if ex.busy:  # cancel the macro: stand still where we are
                    ex.outcome = type(ex.outcome).DONE
                continue
            if not ex.busy:
                deciding.append(i)
        self._decide(deciding, goals, orders, blocked, pose_arr)
        cmds = []
        for i, ex in enumerate(self.execs):
            cmd = STOP
            if ex.busy and not self._must_stop(frames[i], poses[i]):
                cmd = self._drive(i, pose_arr[i], frames[i], t)
            cmd = self._bumper(i, frames[i], cmd, t)
            # the base's speed after this tick (braking is acceleration-limited), not the command
            self._v[i] = ramped_speed(float(self._v[i]), cmd.v, self.cfg.nav.follower.max_accel, float(self.fleet.dt))
            self._w[i] = cmd.w
            cmds.append(cmd)
        self._update_claims(pose_arr)
        return cmds

    def _retarget_on_goal_change(self, goals: list, pose_arr: np.ndarray) -> None:
        """A straight run chosen for a goal that is no longer the goal (a load dropped on the
        way, an order assigned on the way home, a hand-over) ends at the first cell where the
        robot can still stop, so the next decision plans for the new goal there instead of
        after up to ``max_segment_cells`` cells the wrong way."""
        prev = self._goal_cells
        if prev is None:
            return
        for i, ex in enumerate(self.execs):  # the claims shrink with the target (_update_claims)
            if ex.busy and goals[i][0] != prev[i]:
                # a goal behind on the line (a load dropped on the way): stop where braking
                # ends and come back along the line, or decide at once if not yet started
                goal_xy = self.layout.cell_to_xy(np.array(goals[i][0]))
                behind = ex.behind_on_line(pose_arr[i], goal_xy)
                if behind and ex.at_start(pose_arr[i], float(self._v[i])):
                    ex.outcome = type(ex.outcome).DONE  # still turning at its start: decide again now
                else:
                    ex.shorten(pose_arr[i], float(self._v[i]), at_brake_point=behind)

    def _stop_before_blockage(self, blocked: np.ndarray, pose_arr: np.ndarray) -> None:
        """A straight run whose cells ahead are now perceived blocked (a pallet seen after the
        run was chosen) is cancelled while the robot has not left its start (turning towards
        it, say), else cut at the first cell it can stop at: the next decision plans around
        the blockage. Before, the run went on to a stop before the pallet and a 0.5 s blocked
        wait, then drove back (exceptions seed 6: 5 s to get going around it)."""
        for i, ex in enumerate(self.execs):
            if not ex.busy or ex.action > MacroAction.WEST or ex._start_xy is None:
                continue
            ahead = self._ahead(i) - {self.robots[i].cell}
            if not any(blocked[c] for c in ahead):
                continue
            if ex.at_start(pose_arr[i], float(self._v[i])):
                ex.outcome = type(ex.outcome).DONE  # not started yet: decide again now
            else:
                ex.shorten(pose_arr[i], float(self._v[i]))

    # ---- perception and belief ---------------------------------------------------------
    def _perceive(self, frames: Sequence[SensorFrame], poses: Sequence[Pose], xy: np.ndarray,
                  t: float) -> np.ndarray:
        """Update the shared blockage map with every robot's scan; [H, W] bool blocked cells."""
        for i, (fr, p) in enumerate(zip(frames, poses)):
            if fr.lidar is None:
                continue
            others = np.delete(xy[:, :2], i, axis=0)
            self.detector.update(p, fr.lidar, float(fr.stamp), exclude_xy=others)
        blocked = np.zeros(self.layout.shape, bool)
        for b in self.detector.blockages():
            blocked[b.cell] = True
        for rs in self.robots:  # robots are not blockages of the static map
            blocked[rs.cell] = False
        return blocked

    def _must_stop(self, frame: SensorFrame, pose: Pose) -> bool:
        return pose.health == "lost" or frame.lidar is None

    def _carrying(self, i: int, orders: dict) -> bool:
        o = orders.get(self.robots[i].order_id) if self.robots[i].order_id is not None else None
        return o is not None and o.status == "carried" and o.robot == i

    def _goal(self, i: int, orders: dict) -> tuple[Cell, Cell, bool, bool]:
        """(pick-or-home cell, station cell, carrying, has order) of robot ``i``."""
        rs = self.robots[i]
        o = orders.get(rs.order_id) if rs.order_id is not None else None
        if o is None or o.load_cell is None and o.status != "carried":
            return rs.home, rs.home, False, False
        station = (int(o.station_cell[0]), int(o.station_cell[1]))
        if self._carrying(i, orders):
            return station, station, True, True
        return (int(o.load_cell[0]), int(o.load_cell[1])), station, False, True

    def _path(self, start: Cell, goal: Cell, blocked: np.ndarray, key: bytes) -> list[Cell]:
        from planning.paths import astar

        k = (start, goal, key)
        p = self._path_cache.get(k)
        if p is None:
            if len(self._path_cache) > 4096:
                self._path_cache.clear()
            p = astar(self.layout.free, start, goal, blocked=blocked) or astar(self.layout.free, start, goal) \
                or [start]
            self._path_cache[k] = p
        return p

    def _announce(self, goals: list, blocked: np.ndarray) -> None:
        """Plan of each robot (its A* path from where its run ends, ``plan_horizon`` cells),
        announced to the fleet. A robot that is down (:meth:`_watch_breakdowns`) announces
        only the cell it stands in: it goes nowhere until its wheels turn, and the others'
        searches must see a parked robot, not one driving home along a path."""
        key = np.packbits(blocked).tobytes()
        for i, rs in enumerate(self.robots):
            ex = self.execs[i]
            start = ex.target if ex.busy else rs.cell
            if self._down[i]:
                path = [rs.cell]
            else:
                path = self._path(start, goals[i][0], blocked, key)
                if ex.busy and start != rs.cell:
                    path = [rs.cell, *path]
            self._plans[i] = path[: self.cfg.plan_horizon]
            self.fleet.announce_route(i, np.asarray(self._plans[i], np.int64).reshape(-1, 2))

    # ---- fleet decisions ---------------------------------------------------------------
    def _sync_orders(self, orders: dict) -> None:
        for i, rs in enumerate(self.robots):
            if rs.order_id is None:
                continue
            o = orders.get(rs.order_id)
            if o is None or o.robot != i or o.status in ("delivered", "expired", "open"):
                rs.order_id, rs.attempts = None, 0

    def _dispatch(self, orders: dict, blocked: np.ndarray, t: float) -> None:
        self._handover = {k for k in self._handover
                          if k in orders and orders[k].status in ("assigned", "dropped")}
        pool = [dataclasses.replace(o, status="open") if o.id in self._handover else o for o in orders.values()]
        idle = {i: rs.cell for i, rs in enumerate(self.robots) if rs.order_id is None and not self._down[i]}
        for a in dispatch_idle(pool, idle, self.layout.free,
                               cell_size=self.layout.cell_size, now=t,
                               urgency_m_per_s=self.cfg.urgency_m_per_s, blocked=blocked):
            try:
                self.fleet.assign(a.order_id, a.robot_id)
            except ValueError:
                continue
            self.robots[a.robot_id].order_id = a.order_id
            self._handover.discard(a.order_id)

    def _watch_breakdowns(self, frames: Sequence[SensorFrame], orders: dict, t: float) -> None:
        """Breakdown recovery: a robot told to drive (last command) whose wheel odometry
        reads still for ``handover_after_s`` is down; its order, unless it carries the load,
        goes back to the dispatcher for another robot (the hand-over). It is up again as
        soon as its wheels turn. Logged as ``breakdown`` episodes."""
        dt = float(self.fleet.dt)
        for i, fr in enumerate(frames):
            odom = fr.odom
            if odom is None:  # no evidence either way
                continue
            if abs(odom.v) > 0.02 or abs(odom.w) > 0.05:
                self._stall[i], self._down[i] = 0.0, False
            elif abs(self._v[i]) > 0.1 or abs(self._w[i]) > 0.3:
                self._stall[i] += dt
            if not self._down[i] and self._stall[i] >= self.cfg.handover_after_s:
                self._down[i] = True
                rs = self.robots[i]
                o = orders.get(rs.order_id) if rs.order_id is not None else None
                detail = ""
                if o is not None and o.robot == i and o.status in ("assigned", "dropped"):
                    self._handover.add(o.id)
                    rs.order_id, rs.attempts = None, 0
                    detail = f"order {o.id} handed over"
                self.monitor.mark(i, "breakdown", True, t, detail)
            elif not self._down[i]:
                self.monitor.mark(i, "breakdown", False, t)

    def _decide(self, deciding: list[int], goals: list, orders: dict, blocked: np.ndarray,
                pose_arr: np.ndarray) -> None:
        """Pick/drop at the goal cell; everyone else at a decision point: one batched search."""
        search = []
        for i in deciding:
            rs = self.robots[i]
            goal, _station, carrying, has_order = goals[i]
            if has_order and rs.cell == goal:
                ok = self.fleet.drop(i) if carrying else self.fleet.pick(i)
                if ok:
                    rs.attempts = 0
                    if carrying:
                        rs.order_id = None
                    continue
                pose = pose_arr[i]
                centre = np.asarray(self.layout.cell_to_xy(np.array(goal)), dtype=np.float64)
                if float(np.hypot(*(pose[:2] - centre))) > self.cfg.handling_centre_m:
                    self.execs[i].recentre(pose)  # onto the centre, then handle (seed 3: 7 s of retries)
                    rs.attempts = 0
                    continue
                rs.attempts += 1
                if rs.attempts <= self.cfg.handling_retries:
                    continue  # retry next tick (robot standing still)
                rs.attempts = 0
            if not has_order and rs.cell == rs.home:
                continue
            search.append(i)
        if not search:
            return
        actions = self._search(search, goals, blocked)
        for i, a in zip(search, actions):
            self._start(i, int(a), pose_arr[i])

    def _roots(self, idx: list[int], goals: list, blocked: np.ndarray) -> tuple[Any, Any]:
        """Grid-model roots for robots ``idx`` and the model with the other robots' plans."""
        n, horizon = len(self.robots), self.cfg.plan_horizon
        b = len(idx)
        plans = np.full((b, max(n - 1, 0), horizon), -1, np.int64)
        plan_len = np.ones((b, max(n - 1, 0)), np.int64)
        flat_plans = [self.model.to_flat(np.asarray(p, np.int64).reshape(-1, 2)) for p in self._plans]
        for r, i in enumerate(idx):
            k = 0
            for j in range(n):
                if j == i:
                    continue
                fp = flat_plans[j][:horizon]
                plans[r, k, : len(fp)] = fp
                plans[r, k, len(fp):] = fp[-1]
                plan_len[r, k] = len(fp)
                k += 1
        bl = np.argwhere(blocked)
        kmax = self.cfg.max_blockages
        blocks = np.full((b, kmax, 2), -1, np.int64)
        for r, i in enumerate(idx):
            if len(bl):
                d = np.abs(bl - np.asarray(self.robots[i].cell)).sum(1)
                near = bl[np.argsort(d, kind="stable")[:kmax]]
                blocks[r, : len(near)] = near
        pos = np.array([self.robots[i].cell for i in idx], np.int64)
        pick = np.array([goals[i][0] for i in idx], np.int64)
        station = np.array([goals[i][1] for i in idx], np.int64)
        load = np.array([goals[i][2] for i in idx], bool)
        model = self.model.with_plans(plans, plan_len)
        states = model.initial_states(pos, pick, station, load=load, blocks=blocks, scn=np.arange(b))
        return model, states

    def _search(self, idx: list[int], goals: list, blocked: np.ndarray) -> np.ndarray:
        from planning import MCTS, MCTSConfig, RolloutEvaluator
        from planning.grid_model import HandlingOutsideSearch

        cfg = self.cfg
        model, states = self._roots(idx, goals, blocked)
        t0 = time.perf_counter()
        # handling is done at the goal cell, outside the search: the tree never picks or
        # drops (it values the goal cell itself); random rollouts still do, for the reward
        tree_model = HandlingOutsideSearch(model)
        legal = tree_model.legal_actions(states)
        net = self._network if self._online is None else self._online.evaluator  # one read per decision
        res = None
        if cfg.planner == "policy":
            logits, _ = net.evaluate(model.encode(states))
            logits = np.where(legal, logits, -np.inf)
            actions = np.argmax(logits, axis=1)
        else:
            ev = net if cfg.planner == "mcts_rl" else RolloutEvaluator(
                model, depth=cfg.rollout_depth, discount=cfg.discount)
            mcfg = MCTSConfig(num_simulations=cfg.num_simulations, rule=cfg.rule, discount=cfg.discount,
                              max_depth=cfg.max_depth, gumbel_scale=cfg.gumbel_scale, c1=cfg.c_puct,
                              c_scale=cfg.c_scale,
                              max_considered_actions=5)
            res = MCTS(tree_model, ev, mcfg).search(states, seed=cfg.seed + self.decisions)
            q = np.where(legal[:, :5], np.nan_to_num(res.q_values[:, :5], nan=-np.inf), -np.inf)
            actions = np.where(legal[np.arange(len(idx)), res.action], res.action, np.argmax(q, axis=1))
        self.decisions += 1
        self.search_ms.append((time.perf_counter() - t0) * 1e3)
        if self._online is not None:
            self._online.record(model, states, actions, res)
        return actions

    def _start(self, i: int, action: int, pose: np.ndarray) -> None:
        """Start ``action``: a move runs straight on along the robot's plan (up to
        ``max_segment_cells``) over cells no other robot holds; into a held cell it is a WAIT."""
        from sim.types import ACTION_DELTAS

        rs, ex = self.robots[i], self.execs[i]
        centre = np.asarray(self.layout.cell_to_xy(np.array(rs.cell)), dtype=np.float64)
        held = set().union(*(c for j, c in enumerate(self._claims) if j != i))
        if action <= int(MacroAction.WEST):
            d = (int(ACTION_DELTAS[action][0]), int(ACTION_DELTAS[action][1]))
            seg: list[Cell] = []
            cur = rs.cell
            plan = self._plans[i]
            while len(seg) < self.cfg.max_segment_cells:
                nxt = (cur[0] + d[0], cur[1] + d[1])
                if nxt in held or (seg and nxt not in plan):
                    break  # the first cell is the search's choice; later ones follow the plan
                seg.append(nxt)
                cur = nxt
                if nxt == self._goal_cells[i]:
                    break
            if seg:
                self._claims[i] = {rs.cell, *seg}
                ex.action = MacroAction(action)
                # rear first (if short and behind) only onto the goal cell: a dropped load or a
                # pick cell the robot stopped past; after the handling it drives on the way it
                # faces. Elsewhere backing up at 0.5 m/s cell by cell is slower than one turn.
                rear_ok = seg[-1] == self._goal_cells[i]
                ex._goto(seg[-1], centre, yaw=float(pose[2]) if rear_ok else None)
                ex._ticks_left = int(np.ceil((2.0 + 1.5 * len(seg)) / float(self.fleet.dt)))
                return
        ex.start(MacroAction.WAIT, np.array([centre[0], centre[1], 0.0]))
        # re-decide soon: waiting is a decision, not a sleep
        ex._ticks_left = max(1, int(round(self.cfg.wait_s / float(self.fleet.dt))))


    def _update_claims(self, pose_arr: np.ndarray) -> None:
        """Each robot holds its cell, the cells its footprint overlaps (a robot straddling a
        cell boundary holds both: rush seed 0 had a robot drive into a cell whose neighbour's
        body stuck 0.49 m into it) and the rest of its straight run."""
        h = self.cfg.nav.safety.footprint_m / 2 + 0.05
        for i, (rs, ex) in enumerate(zip(self.robots, self.execs)):
            if ex.busy and ex.action <= MacroAction.WEST:
                self._claims[i] = {c for c in self._claims[i] if c == rs.cell or c in self._ahead(i)}
                self._claims[i].add(rs.cell)
            else:
                self._claims[i] = {rs.cell}
            x, y = float(pose_arr[i, 0]), float(pose_arr[i, 1])
            corners = self.layout.xy_to_cell(np.array([[x + dx, y + dy] for dx in (-h, h) for dy in (-h, h)]))
            for r, c in corners:
                cell = (int(r), int(c))
                if 0 <= cell[0] < self._free.shape[0] and 0 <= cell[1] < self._free.shape[1] and self._free[cell]:
                    self._claims[i].add(cell)

    def _ahead(self, i: int) -> set[Cell]:
        """Cells between robot ``i``'s cell and its move target (inclusive of the target)."""
        (r0, c0), (r1, c1) = self.robots[i].cell, self.execs[i].target
        if r0 != r1 and c0 != c1:
            return {(r1, c1)}
        rr = range(min(r0, r1), max(r0, r1) + 1)
        cc = range(min(c0, c1), max(c0, c1) + 1)
        return {(r, c) for r in rr for c in cc}

    def _drive(self, i: int, pose: np.ndarray, frame: SensorFrame, t: float) -> TwistCmd:
        """The executor's command under the lidar guard (``sim.env_parts.GuardedExecutor``, the
        driver the RL envs train with), from the localized pose and the base's speed as the
        commands sent (after cancels and overrides) ramp it (``sim.follower.ramped_speed``),
        not the follower's own last command."""
        return self.execs[i].drive(pose, self.robots[i].cell, frame.lidar, t, v_current=float(self._v[i]))

    def _bumper(self, i: int, frame: SensorFrame, cmd: TwistCmd, t: float) -> TwistCmd:
        """Protective stop / back-off while the contact bumper is pressed (sim.safety)."""
        return self._bumpers.filter(i, frame.bumper, cmd, t)

    # ---- introspection ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Decisions, search time per fleet decision (ms p50/p99), exception log."""
        ms = np.asarray(self.search_ms) if self.search_ms else np.zeros(1)
        return {"planner": self.name, "decisions": self.decisions,
                "search_ms_p50": float(np.percentile(ms, 50)), "search_ms_p99": float(np.percentile(ms, 99)),
                "num_simulations": self.cfg.num_simulations if self.cfg.planner != "policy" else 0,
                "exceptions": self.monitor.log()}

