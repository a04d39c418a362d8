"""Learning environments: contract checker over every ``forklift/*`` env, library checkers
(gymnasium ``check_env``, PettingZoo ``parallel_api_test``, RLlib's multi-agent check),
determinism, and behaviour against oracles (layout geometry, BFS, hand-computed rewards)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

import sim
from sim.env_core import FleetCore, make_env_config
from sim.env_obs import SENSOR_KINDS, SensorEncoder
from sim.env_parts import RewardConfig, bfs_path, free_grid, macro_reward
from sim.env_task import TaskEncoder
from sim.layout import LayoutConfig, generate_layout
from sim.types import LidarScan, MacroAction, SensorFrame, UwbReading

TINY_LAYOUT = LayoutConfig(shelf_rows=1, shelf_cols=2, n_stations=2, n_chargers=2)
TINY = {"n_robots": 2, "duration_s": 8.0, "layout": TINY_LAYOUT, "lidar_beams": 36}
# per-id kwargs that keep the contract checker fast; unknown ids are made with defaults
FAST_KWARGS = {"forklift/Warehouse-v0": TINY, "forklift/Fleet-v0": TINY}


def _forklift_ids() -> list[str]:
    import importlib.util

    if importlib.util.find_spec("planning.grid_env") is not None:  # registers the grid model env
        importlib.import_module("planning.grid_env")
    return sorted(i for i in gym.registry if i.startswith("forklift/"))


def _equal(a, b) -> bool:
    """Bit-identical nested obs."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b))


def _masked_sample(space, obs, rng):
    if isinstance(space, gym.spaces.Discrete) and isinstance(obs, dict) and "action_mask" in obs:
        return int(rng.choice(np.flatnonzero(obs["action_mask"])))
    return space.sample()


# ---- import / registration --------------------------------------------------------------
def test_sim_import__light_and_registers():
    code = ("import sys, sim, gymnasium as gym; "
            "heavy = [m for m in ('pybullet', 'ray', 'pettingzoo', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "assert 'forklift/Warehouse-v0' in gym.registry and 'forklift/Fleet-v0' in gym.registry; "
            "sim.register_envs(); sim.register_envs()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sim_exports__all_resolve():
    for name in sim.__all__:
        assert hasattr(sim, name), name


# ---- contract checker (STYLE 8) -------------------------------------------------------------
def _rollout_single(env, seed: int, n: int):
    space_rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    assert isinstance(info, dict)
    assert env.observation_space.contains(obs), "reset obs outside observation_space"
    out = [(obs, 0.0, False, False)]
    for _ in range(n):
        obs, r, term, trunc, info = env.step(_masked_sample(env.action_space, obs, space_rng))
        assert env.observation_space.contains(obs), "step obs outside observation_space"
        assert isinstance(r, float) and np.isfinite(r)
        assert isinstance(term, bool) and isinstance(trunc, bool) and isinstance(info, dict)
        out.append((obs, r, term, trunc))
        if term or trunc:
            break
    return out


def _rollout_multi(env, seed: int, n: int):
    rng = np.random.default_rng(seed)
    obs, infos = env.reset(seed=seed)
    assert isinstance(obs, dict) and isinstance(infos, dict)
    assert set(obs) <= set(env.possible_agents) and obs
    out = [(obs, {}, {}, {})]
    for _ in range(n):
        for a, o in obs.items():
            assert env.observation_spaces[a].contains(o), a
        acts = {a: _masked_sample(env.action_spaces[a], o, rng) for a, o in obs.items()}
        obs, rew, term, trunc, infos = env.step(acts)
        assert "__all__" in term and "__all__" in trunc
        assert set(obs) <= set(env.possible_agents) and set(rew) <= set(env.possible_agents)
        out.append((obs, rew, term, trunc))
        if term["__all__"] or trunc["__all__"]:
            break
    return out


@pytest.mark.parametrize("env_id", _forklift_ids())
def test_registered_env__contract(env_id):
    kwargs = FAST_KWARGS.get(env_id, {})
    envs = [gym.make(env_id, **kwargs) for _ in range(2)]
    multi = hasattr(envs[0].unwrapped, "possible_agents")
    run = _rollout_multi if multi else _rollout_single
    if not multi:
        assert isinstance(envs[0].observation_space, gym.spaces.Dict)
        for key in ("proprio", "occupancy", "action_mask"):
            assert key in envs[0].observation_space.spaces, key
    a, b = (run(e.unwrapped if multi else e, seed=3, n=4) for e in envs)
    assert len(a) == len(b) and all(_equal(x[0], y[0]) for x, y in zip(a, b)), "same seed, different obs"
    for e in envs:
        e.close()
        e.close()  # idempotent


# ---- library checkers -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["macro", "twist"])
def test_warehouse_env__gymnasium_check_env(mode):
    from gymnasium.utils.env_checker import check_env

    env = gym.make("forklift/Warehouse-v0", action_mode=mode, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warning either
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_fleet_env__pettingzoo_parallel_api_test():
    from pettingzoo.test import parallel_api_test

    from sim.envs import FleetEnv

    env = FleetEnv(**TINY)
    parallel_api_test(env, num_cycles=25)
    env.close()


def test_fleet_env__rllib_view_is_asynchronous():
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    env = gym.make("forklift/Fleet-v0", **{**TINY, "duration_s": 12.0})
    assert isinstance(env, MultiAgentEnv)  # not wrapped: RLlib sees the raw view
    check_multiagent_environments(env)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"robot_0", "robot_1"}  # everyone decides at t = 0
    # robot_0 moves (2 s or more), robot_1 waits (1 s): only robot_1 is asked next
    mask = obs["robot_0"]["action_mask"]
    move = int(np.flatnonzero(mask[:4])[0])
    obs, rew, term, trunc, _ = env.step({"robot_0": move, "robot_1": int(MacroAction.WAIT)})
    assert set(obs) == {"robot_1"} and set(rew) == {"robot_1"}
    assert rew["robot_1"] == pytest.approx(-RewardConfig().time_cost * 1.0)  # time cost of a 1 s wait
    with pytest.raises(ValueError, match="not asked"):
        env.step({"robot_0": 4})
    while not trunc["__all__"]:
        obs, rew, term, trunc, _ = env.step({a: int(MacroAction.WAIT) for a in obs})
        assert term["__all__"] is False
    assert set(obs) == {"robot_0", "robot_1"} and all(trunc[a] for a in obs)
    env.close()
    env.close()


# ---- determinism (STYLE 10) --------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["macro", "twist"])
def test_warehouse_env__same_seed_same_trajectory(mode):
    def roll():
        env = gym.make("forklift/Warehouse-v0", action_mode=mode, **TINY)
        out = _rollout_single(env, seed=11, n=6 if mode == "macro" else 25)
        env.close()
        return out

    a, b = roll(), roll()
    assert len(a) == len(b)
    assert all(_equal(x[0], y[0]) for x, y in zip(a, b))
    assert [x[1] for x in a[1:]] == [y[1] for y in b[1:]]


def test_fleet_env__same_seed_same_trajectory():
    from sim.envs import FleetEnv

    def roll(seed):
        env = FleetEnv(**TINY)
        rng = np.random.default_rng(5)
        obs, _ = env.reset(seed=seed)
        out = [(obs, {})]
        for _ in range(5):
            obs, rew, *_ = env.step({a: _masked_sample(env.action_space(a), obs[a], rng) for a in env.agents})
            out.append((obs, rew))
        env.close()
        return out

    a, b, c = roll(7), roll(7), roll(8)
    assert all(_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    assert not all(_equal(x[0], y[0]) for x, y in zip(a[1:], c[1:]))  # the seed matters


# ---- behaviour against oracles ----------------------------------------------------------------
@pytest.fixture()
def env():
    e = gym.make("forklift/Warehouse-v0", **{**TINY, "duration_s": 90.0}).unwrapped
    yield e
    e.close()


def test_warehouse_env__a_move_into_a_cell_facing_a_shelf_stops_at_the_stop_margin(env):
    """The envs drive under the agent's lidar guard: a cell facing a shelf leaves 0.2 m
    between the body and the shelf at its centre, less than the 0.25 m stop margin, so the
    robot stops a few cm short (in the target cell) and the move ends blocked, as it does
    for the agent."""
    obs, _ = env.reset(seed=0)
    r, c = env.core.cell_of(0)
    facing = [int(a) for a in np.flatnonzero(obs["action_mask"][:4])
              if not env.layout.is_free(np.array([[r + 2 * int(sim.ACTION_DELTAS[a, 0]),
                                                    c + 2 * int(sim.ACTION_DELTAS[a, 1])]]))[0]]
    assert facing, "seed 0's start cell has a move into a shelf-facing cell"
    a = facing[0]
    goal = (r + int(sim.ACTION_DELTAS[a, 0]), c + int(sim.ACTION_DELTAS[a, 1]))
    obs, _, *_, info = env.step(a)
    assert info["outcome"] == "blocked" and info["cell"] == goal
    gap = np.hypot(*(env.core.sim.ground_truth()[0, :2] - env.layout.cell_to_xy(np.array(goal))))
    assert 0.02 < gap < 0.1


def test_warehouse_env__action_mask_matches_layout(env):
    obs, _ = env.reset(seed=0)
    core = env.core
    r, c = core.cell_of(0)
    nb = np.array([[r + 1, c], [r - 1, c], [r, c + 1], [r, c - 1]])
    np.testing.assert_array_equal(obs["action_mask"][:4], env.layout.is_free(nb).astype(np.int8))
    assert obs["action_mask"][MacroAction.WAIT] == 1
    assert obs["action_mask"][MacroAction.DROP] == 0  # carries nothing


def _open_move(env, obs) -> int:
    """A legal move whose target cell does not face a wall/shelf straight ahead."""
    r, c = env.core.cell_of(0)
    for a in np.flatnonzero(obs["action_mask"][:4]):
        d = sim.ACTION_DELTAS[a]
        beyond = np.array([[r + 2 * int(d[0]), c + 2 * int(d[1])]])
        if env.layout.in_bounds(beyond)[0] and env.layout.is_free(beyond)[0]:
            return int(a)
    raise AssertionError("no open move from the start cell")


def test_warehouse_env__move_arrives_at_neighbour_centre(env):
    obs, _ = env.reset(seed=0)
    start = env.core.cell_of(0)
    a = _open_move(env, obs)
    obs, r, *_ , info = env.step(a)
    goal = (start[0] + int(sim.ACTION_DELTAS[a, 0]), start[1] + int(sim.ACTION_DELTAS[a, 1]))
    assert info["outcome"] == "arrived" and info["cell"] == goal
    xy = env.core.sim.ground_truth()[0, :2]
    assert np.hypot(*(xy - env.layout.cell_to_xy(np.array(goal)))) < 0.08
    d_xy = np.array([sim.ACTION_DELTAS[a, 1], sim.ACTION_DELTAS[a, 0]], dtype=np.float32)  # (dx, dy)
    np.testing.assert_array_equal(obs["proprio"][6:8], d_xy)  # moved one cell: unit velocity
    heading = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}[tuple(int(v) for v in d_xy)]
    assert obs["proprio"][2 + heading] == 1.0  # faces the move (E, N, W, S one-hot)
    assert r == pytest.approx(-RewardConfig().time_cost * info["time_s"])  # only the time cost


def test_warehouse_env__masked_action_runs_as_wait_with_penalty(env):
    obs, _ = env.reset(seed=0)
    bad = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    before = env.core.cell_of(0)
    _, r, *_, info = env.step(bad)
    assert info["cell"] == before and info["time_s"] == pytest.approx(1.0)
    assert r == pytest.approx(-RewardConfig().time_cost * 1.0 - RewardConfig().invalid_action)


def test_warehouse_env__bfs_oracle_policy_delivers_an_order(env):
    """Drive robot 0 along BFS paths (the oracle) to pick and deliver: +pick +delivery."""
    obs, info = env.reset(seed=0)
    core, total, delivered = env.core, 0.0, False
    for _ in range(120):
        tgt = core.target_of(0)
        if tgt is None:
            a = MacroAction.WAIT
        elif core.cell_of(0) == tuple(tgt):
            a = MacroAction.DROP if info["carrying"] else MacroAction.PICK
        else:
            path = bfs_path(free_grid(env.layout, core._pallets), core.cell_of(0), tgt)
            d = (path[1][0] - path[0][0], path[1][1] - path[0][1])
            a = next(k for k in range(4) if tuple(sim.ACTION_DELTAS[k]) == d)
        assert obs["action_mask"][int(a)] == 1, (a, obs["action_mask"])
        obs, r, _, trunc, info = env.step(int(a))
        total += r
        if r > 0.5 * RewardConfig().delivery:  # the delivery reward
            delivered = True
            break
        assert not trunc
    assert delivered
    assert core.sim.kpis().orders_delivered >= 1


def test_warehouse_env__twist_drives_forward():
    e = gym.make("forklift/Warehouse-v0", action_mode="twist", **TINY).unwrapped
    e.reset(seed=0)
    p0 = e.core.sim.ground_truth()[0].copy()
    for _ in range(20):
        _, r, *_ = e.step(np.array([0.5, 0.0], dtype=np.float32))
    p1 = e.core.sim.ground_truth()[0]
    heading = np.array([np.cos(p0[2]), np.sin(p0[2])])
    assert (p1[:2] - p0[:2]) @ heading > 0.2  # moved forward (m)
    assert r == pytest.approx(-RewardConfig().time_cost * e.core.dt) or r < 0  # time cost (or a collision)
    e.close()


def test_warehouse_env__truncates_at_duration_with_kpis():
    e = gym.make("forklift/Warehouse-v0", **{**TINY, "duration_s": 3.0}).unwrapped
    e.reset(seed=1)
    trunc, n = False, 0
    while not trunc:
        _, _, term, trunc, info = e.step(int(MacroAction.WAIT))
        assert not term
        n += 1
    assert n == 3 and info["time_s"] == pytest.approx(3.0)
    assert "kpis" in info and info["kpis"]["n_robots"] == 2
    with pytest.raises(RuntimeError, match="reset"):
        e.step(4)
    e.close()


def test_warehouse_env__camera_keys_only_when_enabled():
    e = gym.make("forklift/Warehouse-v0", **TINY).unwrapped
    assert "camera_rgb" not in e.observation_space.spaces and "lidar" in e.observation_space.spaces
    e.close()
    e = gym.make("forklift/Warehouse-v0", camera=True, lidar=False, **TINY).unwrapped
    assert "lidar" not in e.observation_space.spaces
    obs, _ = e.reset(seed=0)
    obs, *_ = e.step(int(MacroAction.WAIT))  # 20 ticks: the camera (every 4th tick) is fresh
    assert obs["camera_rgb"].shape == (64, 64, 3) and obs["camera_rgb"].any()
    present = dict(zip(SENSOR_KINDS, obs["sensor_mask"]))
    assert present["camera"] == 1 and present["lidar"] == 0
    assert e.observation_space.contains(obs)
    e.close()


def test_make_env_config__unknown_key_fails_fast():
    with pytest.raises(ValueError, match="lidar_bems: unknown env option"):
        make_env_config(lidar_bems=3)
    with pytest.raises(ValueError, match="action_mode"):
        make_env_config(action_mode="teleport")


# ---- pure parts ---------------------------------------------------------------------------
def test_bfs_path__shortest_and_unreachable():
    free = np.ones((3, 4), dtype=bool)
    free[1, 1:3] = False
    path = bfs_path(free, (0, 0), (2, 3))
    assert path[0] == (0, 0) and path[-1] == (2, 3) and len(path) == 6  # Manhattan 5 moves
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in itertools.pairwise(path))
    free[:, 2] = False
    assert bfs_path(free, (0, 0), (2, 3)) is None
    assert bfs_path(free, (0, 0), (0, 0)) == [(0, 0)]


def test_fleet_core__assigns_with_the_agents_dispatcher():
    """The learning env assigns orders as the agent does (sim.dispatch), not its own way."""
    from sim.dispatch import dispatch_idle

    core = FleetCore(make_env_config(n_robots=3, duration_s=30.0, orders_per_min=30.0), learners=())
    core.reset(seed=3)
    for _ in range(2000):
        orders = [o for o in core.sim.orders if o.status == "open"]
        if orders:
            break
        core.tick()
    assert orders, "no order was released"
    t = float(core.sim.time)
    before = {o.id: o.robot for o in core.sim.orders}
    busy = {o.robot for o in core.sim.orders if o.robot is not None and o.status in ("assigned", "carried", "dropped")}
    idle = {i: core.cell_of(i) for i in range(3) if i not in busy}
    expect = dispatch_idle(core.sim.orders, idle, core.layout.free, cell_size=core.layout.cell_size,
                           now=t, urgency_m_per_s=0.05)
    core._last_dispatch = -1e9
    core.tick()
    got = {o.id: o.robot for o in core.sim.orders if before.get(o.id) is None and o.robot is not None}
    assert expect and got == {a.order_id: a.robot_id for a in expect}
    core.close()


def test_macro_reward__vectorised_and_consistent():
    cfg = RewardConfig(time_cost=0.1, delivery=10.0, pick=1.0, collision=5.0, invalid_action=0.1)
    r = macro_reward(cfg, elapsed_s=np.array([2.0, 1.0]), delivered=np.array([1, 0]), picked=np.array([0, 1]),
                     collisions=np.array([0, 2]), invalid=np.array([1, 0]))
    np.testing.assert_allclose(r, [10.0 - 0.2 - 0.1, 1.0 - 0.1 - 10.0])


def test_sensor_encoder__inf_nan_absent():
    lay = generate_layout(TINY_LAYOUT)
    cfg = make_env_config(**TINY).sim.sensors
    enc = SensorEncoder(cfg, lay)
    ranges = np.full(36, 2.0)
    ranges[0], ranges[1] = np.inf, np.nan
    f = SensorFrame(stamp=0.0, robot_id=0, lidar=LidarScan(np.zeros(36), ranges, 10.0),
                    uwb=UwbReading(np.array([2, 4]), np.array([3.0, 5.0])))
    o = enc.encode(f)
    assert o["lidar"][0] == 10.0 and o["lidar_mask"][0] == 1
    assert o["lidar"][1] == 0.0 and o["lidar_mask"][1] == 0 and o["lidar"][2] == 2.0
    np.testing.assert_array_equal(o["uwb_mask"], [0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(o["uwb"][[2, 4]], [3.0, 5.0])
    present = dict(zip(SENSOR_KINDS, o["sensor_mask"]))
    assert present["lidar"] == 1 and present["uwb"] == 1 and present["odom"] == 0 and present["camera"] == 0
    np.testing.assert_array_equal(o["odom"], 0.0)  # absent -> zeros, masked
    spaces = enc.spaces()
    assert all(spaces[k].contains(v) for k, v in o.items())


def test_task_encoder__crop_matches_layout():
    lay = generate_layout(TINY_LAYOUT)
    enc = TaskEncoder(lay, crop_size=5)
    h, w = lay.shape
    for cell in [(1, 1), (h - 2, w - 2), tuple(lay.free_cells[len(lay.free_cells) // 2])]:
        pallet, other = (cell[0], cell[1] + 1), (cell[0] - 1, cell[1])
        o = enc.encode(cell, heading=0, velocity=np.zeros(2), load=False, pick=None, station=None,
                       pallets=np.array([pallet]), others=np.array([other]), time_frac=0.25)
        occ = o["occupancy"]
        for dr in range(-2, 3):
            for dc in range(-2, 3):
                rr, cc = cell[0] + dr, cell[1] + dc
                want = 1.0 if not (0 <= rr < h and 0 <= cc < w) else float(lay.occupancy[rr, cc])
                if (rr, cc) == pallet and want < 1:
                    want = 0.5
                if (rr, cc) == other and want < 1:
                    want = 0.25
                assert occ[2 + dr, 2 + dc] == want, (cell, dr, dc)
        assert o["action_mask"][MacroAction.EAST] == 0  # pallet ahead
        assert o["proprio"][11] == pytest.approx(0.25)
        assert all(enc.spaces()[k].contains(v) for k, v in o.items())


def test_task_encoder__matches_planning_grid_model():
    """Oracle: the planner's GridModel.encode gives the same features for the same situation."""
    import planning.grid_model as grid_model
    lay = generate_layout(TINY_LAYOUT)
    enc = TaskEncoder(lay, crop_size=7)
    model = grid_model.GridModel(lay, grid_model.GridModelConfig(crop_size=7, horizon_steps=40))
    rng = np.random.default_rng(0)
    free = lay.free_cells
    for _ in range(25):
        pos, pick, blk = (tuple(int(v) for v in free[rng.integers(len(free))]) for _ in range(3))
        if rng.random() < 0.3:
            pick = pos
        station = tuple(int(v) for v in lay.stations[rng.integers(len(lay.stations))])
        load = bool(rng.random() < 0.5)
        heading, t = int(rng.integers(4)), int(rng.integers(40))
        st = model.replace(model.initial_states(np.array([pos]), np.array([pick]), np.array([station]),
                                                load=np.array([load]), blocks=np.array([[blk]])),
                           heading=np.array([heading]), t=np.array([t]))
        want = {k: v[0] for k, v in model.encode(st).items()}
        got = enc.encode(pos, heading=heading, velocity=np.zeros(2), load=load, pick=pick,
                         station=station, pallets=np.array([blk]), others=np.zeros((0, 2)), time_frac=t / 40)
        assert set(want) == set(got)
        for k, v in want.items():
            np.testing.assert_allclose(got[k].astype(np.float32), v, atol=1e-6, err_msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("env_kind", ["single", "fleet"])
def test_envs__survive_the_exceptions_scenario(env_kind):
    """Pallets, dropped loads, outages, breakdowns and people: obs stay in their spaces."""
    kw = {"n_robots": 3, "duration_s": 90.0, "faults": "exceptions"}
    rng = np.random.default_rng(0)
    if env_kind == "single":
        env = gym.make("forklift/Warehouse-v0", **kw).unwrapped
        out = _rollout_single(env, seed=2, n=10_000)
        assert out[-1][3]  # truncated at duration_s
    else:
        from sim.envs import FleetEnv

        env = FleetEnv(**kw)
        obs, _ = env.reset(seed=2)
        while env.agents:
            obs, *_ = env.step({a: _masked_sample(env.action_space(a), obs[a], rng) for a in env.agents})
            assert all(env.observation_space(a).contains(o) for a, o in obs.items())
    assert env.core.sim.events if env_kind == "single" else env.driver.core.sim.events
    env.close()


def test_reward_defaults__match_the_grid_model():
    import planning.grid_model as grid_model
    g, r = grid_model.GridModelConfig(), RewardConfig()
    assert (r.time_cost, r.delivery, r.pick, -r.collision, -r.invalid_action) == (
        g.time_cost_per_s, g.delivery_reward, g.pick_reward, g.collision_reward, g.invalid_reward)


def test_macro_executor__a_new_move_starts_from_the_measured_speed():
    """A macro cancelled at speed leaves the follower's last command stale; given the measured
    speed (odometry: standing still) a move in a new direction turns first instead of
    "continuing" at the old speed along the old heading (seed 6 of scenario=exceptions: a
    robot stopped by a lidar outage drove into the wall on the next move)."""
    from sim.env_parts import MacroExecutor
    from sim.types import ACTION_DELTAS, MacroAction

    lay = generate_layout(LayoutConfig())
    r, c = 1, 1
    assert lay.free[r, c + 1] and lay.free[r + 1, c]
    start = lay.cell_to_xy(np.array([r, c]))
    pose = np.array([start[0], start[1], 0.0])  # facing east (+x)
    for v_meas, expect_moving in ((None, True), (0.0, False)):
        ex = MacroExecutor(lay, 0.05)
        ex.start(MacroAction.EAST, pose)
        for _ in range(12):  # accelerate east
            cmd = ex.command(pose, None)
        assert cmd.v > 0.4
        ex.outcome = type(ex.outcome).DONE  # cancelled by an outer safety stop; the robot stood still
        move = next(MacroAction(k) for k in range(4) if tuple(int(d) for d in ACTION_DELTAS[k]) == (1, 0))
        ex.start(move, pose)
        cmd = ex.command(pose, None, v_current=v_meas)
        assert (cmd.v > 0.2) is expect_moving, (v_meas, cmd)
