"""Greedy order dispatcher: open orders to idle robots by path distance.

Pure logic over the WMS view (``Order``-like records) and per-robot distance fields;
the caller applies the result with ``sim.assign(order_id, robot_id)``. The one
dispatcher of the project: the agent, the classic baseline and the learning
environments (``sim.env_core.FleetCore``) all assign through :func:`greedy_assign`,
so a policy trains under the dispatcher it is deployed with.

Policy (what a fleet manager does out of the box): repeatedly take the cheapest
(robot, order) pair, cost = grid path length robot -> load (m) plus a small
deadline-urgency tie-breaker, until no idle robot or no reachable open order is left.
Ties break on (cost, order release time, order id, robot id), so the result is
deterministic.

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace as O
    >>> orders = [O(id=7, status="open", load_cell=(1, 3), release_t=0.0, deadline_t=60.0)]
    >>> dist = {0: np.array([[9, 9, 9, 9], [3, 2, 1, 0]])}
    >>> greedy_assign(orders, dist, cell_size=1.0)
    [Assignment(order_id=7, robot_id=0, cost_m=0.0)]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sim.layout import bfs_distances

__all__ = ["Assignment", "OrderLike", "dispatch_idle", "greedy_assign"]


class OrderLike(Protocol):
    """The fields of ``sim``'s ``Order`` the dispatcher reads."""

    id: int
    status: str
    load_cell: tuple[int, int]
    release_t: float
    deadline_t: float


@dataclass(frozen=True)
class Assignment:
    """One dispatch decision.

    Attributes:
        order_id: the order.
        robot_id: the robot that fetches it.
        cost_m: grid path length robot -> load (m).
    """

    order_id: int
    robot_id: int
    cost_m: float


def greedy_assign(orders: Sequence[OrderLike], dist_fields: Mapping[int, np.ndarray], *,
                  cell_size: float, now: float | None = None, urgency_m_per_s: float = 0.0,
                  forbidden: Collection[tuple[int, int]] = ()) -> list[Assignment]:
    """Assign open orders to idle robots, cheapest pair first.

    Args:
        orders: the WMS order list; only ``status == "open"`` orders are considered.
        dist_fields: idle robot id -> [H, W] int step counts from that robot's cell
            (``planning.bfs_distances``; -1 = unreachable).
        cell_size: metres per grid step.
        now: current time (s); with ``urgency_m_per_s`` > 0 an order's cost is lowered by
            ``urgency_m_per_s * (now - release_t)`` (older orders first, at equal distance).
        urgency_m_per_s: ageing weight (m per s of waiting).
        forbidden: (order id, robot id) pairs not to make (e.g. a robot that just gave
            up on that order).

    Returns:
        Assignments in decision order; each robot and each order appears at most once.
    """
    open_orders = [o for o in orders if o.status == "open"]
    if not open_orders or not dist_fields:
        return []
    pairs = []
    for o in open_orders:
        r, c = int(o.load_cell[0]), int(o.load_cell[1])
        age = 0.0 if now is None else max(now - o.release_t, 0.0)
        for rid, field in dist_fields.items():
            if (o.id, rid) in forbidden:
                continue
            steps = int(field[r, c]) if 0 <= r < field.shape[0] and 0 <= c < field.shape[1] else -1
            if steps < 0:
                continue
            dist_m = steps * cell_size
            pairs.append((dist_m - urgency_m_per_s * age, o.release_t, o.id, rid, dist_m))
    pairs.sort()
    out: list[Assignment] = []
    used_r: set[int] = set()
    used_o: set[int] = set()
    for _, _, oid, rid, dist_m in pairs:
        if rid in used_r or oid in used_o:
            continue
        out.append(Assignment(order_id=oid, robot_id=rid, cost_m=dist_m))
        used_r.add(rid)
        used_o.add(oid)
    return out


def dispatch_idle(orders: Sequence[OrderLike], idle_cells: Mapping[int, tuple[int, int]],
                  free: np.ndarray, *, cell_size: float, now: float | None = None,
                  urgency_m_per_s: float = 0.0, blocked: np.ndarray | None = None,
                  forbidden: Collection[tuple[int, int]] = ()) -> list[Assignment]:
    """:func:`greedy_assign` with the distance fields computed here (the call every fleet makes).

    Args:
        orders: the WMS order list (open orders with a known ``load_cell`` are considered).
        idle_cells: idle robot id -> its (row, col) cell.
        free: [H, W] bool drivable cells of the layout.
        cell_size: metres per grid step.
        now: current time (s), for the ageing term.
        urgency_m_per_s: ageing weight (m per s of waiting).
        blocked: optional [H, W] bool blockages the caller knows of (paths avoid them).
        forbidden: (order id, robot id) pairs not to make.

    Returns:
        As :func:`greedy_assign`.
    """
    pool = [o for o in orders if o.status == "open" and o.load_cell is not None]
    if not pool or not idle_cells:
        return []
    fields = {i: bfs_distances(free, c, blocked=blocked) for i, c in idle_cells.items()}
    return greedy_assign(pool, fields, cell_size=cell_size, now=now,
                         urgency_m_per_s=urgency_m_per_s, forbidden=forbidden)
