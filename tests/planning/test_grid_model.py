"""The warehouse grid model: consistency with the layout, rules, observation, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from planning import GridModel, GridModelConfig, sample_situations
from planning.batch import tree_take
from planning.evaluators import random_legal_actions
from planning.grid_model import OCC_BLOCKAGE, OCC_ROBOT, OCC_STATIC, PROPRIO_DIM
from sim.types import MacroAction

WAIT, PICK, DROP = int(MacroAction.WAIT), int(MacroAction.PICK), int(MacroAction.DROP)


def _situations(layout, kinds=("open", "blocked", "congested"), n=12, seed=0, **cfg):
    kinds = [kinds[i % len(kinds)] for i in range(n)]
    return sample_situations(
        layout, kinds, np.random.default_rng(seed), config=GridModelConfig(**cfg)
    )


def test_grid_model__random_legal_walk_never_enters_shelves_or_blockages(layout) -> None:
    model, st = _situations(layout, n=32, other_wait_prob=0.3, blockage_clear_rate_per_s=0.0)
    rng = np.random.default_rng(1)
    assert st.block_on.any()
    for _ in range(300):
        legal = model.legal_actions(st)
        st, _, _ = model.step(st, random_legal_actions(legal, rng), rng)
        rc = model.to_cells(st.pos)
        assert layout.free[rc[:, 0], rc[:, 1]].all()
        assert not ((st.pos[:, None] == st.blocks) & st.block_on).any()


def test_grid_model__moves_follow_action_deltas(layout) -> None:
    model, st = _situations(layout, kinds=("open",), n=16)
    legal = model.legal_actions(st)
    for a in range(4):
        rows = np.flatnonzero(legal[:, a])
        sub = tree_take(st, rows)
        nxt, _, _ = model.step(sub, np.full(len(rows), a), np.random.default_rng(0))
        d = model.to_cells(nxt.pos) - model.to_cells(sub.pos)
        expected = {0: (1, 0), 1: (-1, 0), 2: (0, 1), 3: (0, -1)}[a]
        assert (d == expected).all()
        assert (nxt.heading == [1, 3, 0, 2][a]).all() and nxt.moved.all()


def test_grid_model__pick_and_drop_only_where_allowed(layout) -> None:
    model, st = _situations(layout, kinds=("open",), n=4, other_wait_prob=0.0)
    legal = model.legal_actions(st)
    assert not legal[:, [PICK, DROP]].any()  # not on the pick cell yet, nothing loaded
    rng = np.random.default_rng(0)
    nxt, r, _ = model.step(st, np.full(4, PICK), rng)  # illegal: a no-op with a penalty
    np.testing.assert_array_equal(nxt.pos, st.pos)
    assert not nxt.load.any() and np.allclose(r, model._step_reward + model.config.invalid_reward)
    at_pick = replace(st, pos=st.pick)
    assert (
        model.legal_actions(at_pick)[:, PICK].all()
        and not model.legal_actions(at_pick)[:, DROP].any()
    )
    loaded, r, _ = model.step(at_pick, np.full(4, PICK), rng)
    assert loaded.load.all() and np.allclose(r, model._step_reward + model.config.pick_reward)
    assert not model.legal_actions(loaded)[:, PICK].any()
    at_station = replace(loaded, pos=loaded.station)
    assert model.legal_actions(at_station)[:, DROP].all()
    done_state, r, _ = model.step(at_station, np.full(4, DROP), rng)
    assert not done_state.load.any() and (done_state.delivered == 1).all()
    assert np.allclose(r, model._step_reward + model.config.delivery_reward)
    assert np.isin(done_state.pick, model.pick_cells).all()  # a new order was drawn


def test_grid_model__delivery_ends_the_episode_when_configured(layout) -> None:
    model, st = _situations(layout, kinds=("open",), n=2, terminate_on_delivery=True)
    st = replace(st, pos=st.station, load=np.ones(2, bool))
    _, _, done = model.step(st, np.full(2, DROP), np.random.default_rng(0))
    assert done.all()
    _, _, done = model.step(st, np.full(2, WAIT), np.random.default_rng(0))
    assert not done.any()


def test_grid_model__blockages_block_until_they_clear(layout) -> None:
    model, st = _situations(layout, kinds=("blocked",), n=1, blockage_clear_rate_per_s=0.0)
    st = tree_take(st, np.zeros(400, np.int64))
    block = st.blocks[0, 0]
    nb = next(a for a in range(4) if model._free[block - model._delta[a]])
    st = replace(st, pos=np.full(400, block - model._delta[nb]))  # next to the blockage
    assert not model.legal_actions(st)[:, nb].any()
    fast = GridModel(
        layout,
        GridModelConfig(blockage_clear_rate_per_s=0.5),
        plans=model.plans,
        plan_len=model.plan_len,
    )
    nxt, _, _ = fast.step(st, np.full(400, WAIT), np.random.default_rng(0))
    cleared = ~nxt.block_on[:, 0]
    assert abs(cleared.mean() - fast.p_clear) < 0.08
    assert fast.legal_actions(nxt)[cleared, nb].all()


def test_grid_model__other_robots_follow_plans_and_collisions_cancel_moves(layout) -> None:
    model, st = _situations(layout, kinds=("congested",), n=8, other_wait_prob=0.0)
    rng = np.random.default_rng(0)
    nxt, _, _ = model.step(st, np.full(8, WAIT), rng)
    expect = np.minimum(st.others_k + 1, model.plan_len[st.scn] - 1)
    np.testing.assert_array_equal(nxt.others_k, expect)
    # Put a scripted robot's next cell in front of the ego and drive into it.
    row, r = 0, 0
    plan = model.plans[row, r]
    assert model.plan_len[row, r] >= 2
    nxt_cell = plan[1]
    moves = [a for a in range(4) if model._free[nxt_cell - model._delta[a]]]
    a = moves[0]
    ego = replace(tree_take(st, np.array([row])), pos=np.array([nxt_cell - model._delta[a]]))
    out, reward, _ = model.step(ego, np.array([a]), rng)
    assert out.pos[0] == ego.pos[0]
    assert reward[0] == pytest.approx(model._step_reward + model.config.collision_reward)


def test_grid_model__same_seed_same_rollout(layout) -> None:
    def rollout(seed: int) -> list[np.ndarray]:
        model, st = _situations(layout, n=6, seed=3)
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(50):
            st, r, _ = model.step(st, random_legal_actions(model.legal_actions(st), rng), rng)
            out += [st.pos.copy(), r.copy(), st.others_k.copy(), st.block_on.copy()]
        return out

    a, b, c = rollout(0), rollout(0), rollout(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_grid_model__encode_keys_shapes_and_ranges(layout) -> None:
    model, st = _situations(layout, n=9)
    enc = model.encode(st)
    s = model.config.crop_size
    assert set(enc) == {"proprio", "occupancy", "action_mask"}
    assert enc["proprio"].shape == (9, PROPRIO_DIM) and enc["proprio"].dtype == np.float32
    assert enc["occupancy"].shape == (9, s, s) and enc["occupancy"].dtype == np.float32
    np.testing.assert_array_equal(enc["action_mask"], model.legal_actions(st).astype(np.float32))
    assert (np.abs(enc["proprio"]) <= 1).all()
    assert set(np.unique(enc["occupancy"])) <= {0.0, OCC_ROBOT, OCC_BLOCKAGE, OCC_STATIC}
    rc = model.to_cells(st.pos)
    half = s // 2
    for i in range(9):  # the crop is the layout around the robot (row i = north)
        r, c = rc[i]
        for dr, dc in ((0, 1), (1, 0), (-1, 0), (0, -1), (2, 3)):
            rr, cc = r + dr, c + dc
            inside = 0 <= rr < layout.shape[0] and 0 <= cc < layout.shape[1]
            if not inside or layout.occupancy[rr, cc]:
                assert enc["occupancy"][i, half + dr, half + dc] == OCC_STATIC
    assert (enc["occupancy"][:, half, half] == 0).all()
    xy = layout.cell_to_xy(rc)
    np.testing.assert_allclose(enc["proprio"][:, 0], xy[:, 0] / layout.size_m[0], rtol=1e-6)
    goal = layout.cell_to_xy(model.to_cells(st.pick))
    np.testing.assert_allclose(enc["proprio"][:, 8:10], (goal - xy) / max(layout.size_m), atol=1e-6)


def test_grid_model__encode_marks_blockages_and_robots(layout) -> None:
    model, st = _situations(layout, kinds=("blocked", "congested"), n=2)
    enc = model.encode(st)
    assert (enc["occupancy"][0] == OCC_BLOCKAGE).sum() >= 1
    assert (enc["occupancy"][1] == OCC_ROBOT).sum() >= 1


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"horizon_steps": 0}, "grid.horizon_steps"),
        ({"crop_size": 10}, "grid.crop_size"),
        ({"other_wait_prob": 1.5}, "grid.other_wait_prob"),
        ({"nominal_speed_mps": 0.0}, "grid.nominal_speed_mps"),
    ],
)
def test_grid_model__bad_config_refused(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GridModelConfig(**kw)


def test_sample_situations__unknown_kind_refused(layout) -> None:
    with pytest.raises(ValueError, match="situation.kind: 'jam'"):
        sample_situations(layout, ["jam"], np.random.default_rng(0))


def test_sample_situations__reusing_a_model_gives_the_same_situations(layout) -> None:
    kinds = ["open", "blocked", "congested"] * 2
    m1, s1 = sample_situations(layout, kinds, np.random.default_rng(3))
    base = GridModel(layout)
    m2, s2 = sample_situations(layout, kinds, np.random.default_rng(3), model=base)
    np.testing.assert_array_equal(m1.plans, m2.plans)
    np.testing.assert_array_equal(m1.plan_len, m2.plan_len)
    assert all(np.array_equal(getattr(s1, f), getattr(s2, f)) for f in s1.__dataclass_fields__)
    assert m2._occ_flat is base._occ_flat  # the lookup tables are shared
    with pytest.raises(ValueError, match="situation.model"):
        sample_situations(
            layout, kinds, np.random.default_rng(3), model=base, config=GridModelConfig(crop_size=5)
        )
