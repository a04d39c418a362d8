"""Greedy dispatcher: pure logic over Order-like records and distance fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sim.dispatch import Assignment, greedy_assign
from planning import bfs_distances


@dataclass(frozen=True)
class FakeOrder:
    id: int
    load_cell: tuple[int, int]
    status: str = "open"
    release_t: float = 0.0
    deadline_t: float = 120.0


FREE = np.ones((5, 8), dtype=bool)


def fields(*cells):
    return {i: bfs_distances(FREE, c) for i, c in enumerate(cells)}


def test_dispatch__nearest_pair_first():
    orders = [FakeOrder(0, (0, 7)), FakeOrder(1, (0, 1))]
    out = greedy_assign(orders, fields((0, 0), (0, 6)), cell_size=1.0)
    assert out == [Assignment(0, 1, 1.0), Assignment(1, 0, 1.0)] or out == [
        Assignment(1, 0, 1.0), Assignment(0, 1, 1.0)]
    assert {(a.order_id, a.robot_id) for a in out} == {(0, 1), (1, 0)}


def test_dispatch__each_robot_and_order_at_most_once():
    orders = [FakeOrder(k, (k % 5, 7 - k % 8)) for k in range(6)]
    out = greedy_assign(orders, fields((0, 0), (4, 4), (2, 2)), cell_size=1.0)
    assert len(out) == 3
    assert len({a.robot_id for a in out}) == 3 and len({a.order_id for a in out}) == 3


def test_dispatch__ignores_non_open_orders():
    orders = [FakeOrder(0, (0, 1), status="assigned"), FakeOrder(1, (0, 2), status="delivered"),
              FakeOrder(2, (4, 7))]
    out = greedy_assign(orders, fields((0, 0)), cell_size=1.0)
    assert [a.order_id for a in out] == [2]


def test_dispatch__skips_unreachable_orders():
    free = FREE.copy()
    free[:, 4] = False  # a wall splits the floor
    orders = [FakeOrder(0, (2, 6)), FakeOrder(1, (2, 2))]
    out = greedy_assign(orders, {0: bfs_distances(free, (0, 0))}, cell_size=1.0)
    assert [a.order_id for a in out] == [1]


def test_dispatch__cost_in_metres():
    out = greedy_assign([FakeOrder(0, (0, 3))], fields((0, 0)), cell_size=0.5)
    assert out[0].cost_m == pytest.approx(1.5)


def test_dispatch__ties_break_on_release_time_then_id():
    orders = [FakeOrder(5, (0, 2), release_t=10.0), FakeOrder(3, (2, 0), release_t=10.0),
              FakeOrder(9, (1, 1), release_t=1.0)]
    out = greedy_assign(orders, fields((0, 0)), cell_size=1.0)
    assert out[0].order_id == 9


def test_dispatch__urgency_prefers_old_orders():
    orders = [FakeOrder(0, (0, 1), release_t=100.0), FakeOrder(1, (0, 4), release_t=0.0)]
    near = greedy_assign(orders, fields((0, 0)), cell_size=1.0, now=100.0)
    aged = greedy_assign(orders, fields((0, 0)), cell_size=1.0, now=100.0, urgency_m_per_s=0.1)
    assert near[0].order_id == 0 and aged[0].order_id == 1


@pytest.mark.parametrize("orders,cells", [([], [(0, 0)]), ([FakeOrder(0, (1, 1))], [])])
def test_dispatch__empty_inputs_give_no_assignment(orders, cells):
    assert greedy_assign(orders, fields(*cells), cell_size=1.0) == []


def test_dispatch__is_deterministic():
    rng = np.random.default_rng(0)
    orders = [FakeOrder(k, (int(rng.integers(5)), int(rng.integers(8))), release_t=float(rng.integers(3)))
              for k in range(10)]
    f = fields((0, 0), (4, 7), (2, 3))
    assert greedy_assign(orders, f, cell_size=1.0) == greedy_assign(list(orders), dict(f), cell_size=1.0)
