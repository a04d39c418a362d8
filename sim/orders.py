"""Pick-and-deliver order stream (pure python/numpy; the physics of loads lives in the sim).

Orders are released by a seeded Poisson process at shelf faces (``layout.pick_points``
reachable from the stations) and must be carried to a station. Life cycle::

    open -> assigned -> carried -> delivered
              ^  |        |
              |  v        v
             open      dropped -> carried (re-pick) ...
    open -> expired (deadline passed before anyone took it)

Only ``open`` orders expire; an assigned, carried or dropped order can still be
delivered after its deadline (it then counts as late).

Saturated warehouse (``OrdersConfig.backlog_per_robot`` = b > 0, ``scenario=rush``): on
top of the Poisson stream, the book keeps ``b * n_robots`` orders ``open`` at all times
(RWARE's request queue, lifelong MAPF): whenever one is assigned (or expires, or is
delivered), a new one is released at a free shelf face in the same tick, so every robot
always has an order available (``b >= 1`` is enough for that: open >= n_robots >= idle
robots). Backlog orders are released only at pick faces no other open or assigned order
uses (two loads never share a face); on a warehouse with fewer free faces the backlog is
as large as the faces allow. ``max_open`` does not cap it.

KPIs with a backlog: the queue always holds ``b * n_robots`` orders nobody was asked to
serve yet, so counting them as released would make completion rate a function of ``b``,
not of the fleet. With a backlog an order's *service clock* starts when the fleet takes it:
open orders never expire, and :meth:`OrderBook.arrays` reports ``release_t`` = the first
assignment to a robot (nan if never assigned) and ``deadline_t`` = that +
``order_deadline_s``. So completion rate = delivered / orders first assigned at least
``order_deadline_s`` before the end, late = delivered more than ``order_deadline_s`` after
the first assignment, and orders per hour (deliveries per sim hour) is the headline KPI.
Without a backlog nothing changes (same random draws, bit-identical episodes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from sim.config import OrdersConfig
from sim.layout import Layout

Cell = tuple[int, int]
OrderStatus = Literal["open", "assigned", "carried", "dropped", "delivered", "expired"]
ASSIGNABLE: frozenset[str] = frozenset({"open", "assigned", "dropped"})


@dataclass(frozen=True)
class Order:
    """One pick-and-deliver order (WMS view).

    Attributes:
        id: unique within an episode, release order.
        pick_cell: drivable cell facing the shelf (row, col).
        shelf_cell: the shelf cell holding the load.
        station_cell: delivery cell.
        release_t, deadline_t: s.
        status: see module docstring.
        robot: assigned robot, None when open/expired.
        load_cell: where the load waits: pick_cell, or the floor cell where it was dropped.
        picked_t, delivered_t: s, first pick and delivery times (None before).
        assigned_t: s, first assignment to a robot (None before).
    """

    id: int
    pick_cell: Cell
    shelf_cell: Cell
    station_cell: Cell
    release_t: float
    deadline_t: float
    status: OrderStatus = "open"
    robot: int | None = None
    load_cell: Cell | None = None
    picked_t: float | None = None
    delivered_t: float | None = None
    assigned_t: float | None = None

    @property
    def late(self) -> bool:
        """Delivered after the deadline (False while not delivered)."""
        return self.delivered_t is not None and self.delivered_t > self.deadline_t


def poisson_release_times(
    rate_per_min: float, duration_s: float, n_initial: int, rng: np.random.Generator
) -> np.ndarray:
    """[O] sorted release times (s): ``n_initial`` at t = 0 then a Poisson process."""
    times = [0.0] * n_initial
    if rate_per_min > 0:
        t = 0.0
        mean = 60.0 / rate_per_min
        while True:
            t += float(rng.exponential(mean))
            if t >= duration_s:
                break
            times.append(t)
    return np.array(times, dtype=np.float64)


class OrderBook:
    """The order stream of one episode.

    Args:
        cfg: order parameters.
        layout: floor plan (pick points and stations).
        duration_s: episode length (s).
        rng: generator for release times and cells.
        n_robots: fleet size (sets the backlog ``cfg.backlog_per_robot * n_robots``).
    """

    def __init__(
        self,
        cfg: OrdersConfig,
        layout: Layout,
        duration_s: float,
        rng: np.random.Generator,
        *,
        n_robots: int = 1,
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self._rng = rng
        self._pickable = layout.connected_pick_points()  # [P'] indices
        self._times = poisson_release_times(cfg.rate_per_min, duration_s, cfg.n_initial, rng)
        self._next = 0
        self._orders: dict[int, Order] = {}
        self.backlog_target = max(0, cfg.backlog_per_robot) * max(0, n_robots)
        self._t = 0.0  # latest time seen (s): assignments are stamped with it

    @property
    def orders(self) -> list[Order]:
        """All released orders, by id."""
        return list(self._orders.values())

    def get(self, order_id: int) -> Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise ValueError(f"order_id: {order_id} is not a released order") from None

    def active_of(self, robot: int) -> Order | None:
        """The robot's assigned, carried or dropped order (None if none)."""
        for o in self._orders.values():
            if o.robot == robot and o.status in ("assigned", "carried", "dropped"):
                return o
        return None

    # ---- time ---------------------------------------------------------------------
    @property
    def n_open(self) -> int:
        """Orders waiting for a robot (status ``open``)."""
        return sum(o.status == "open" for o in self._orders.values())

    def release_due(self, t: float) -> list[Order]:
        """Release every order whose time has come (skipped while ``max_open`` wait), then
        top the backlog up to :attr:`backlog_target` open orders (no-op without a backlog)."""
        self._t = max(self._t, float(t))
        out = []
        while self._next < len(self._times) and self._times[self._next] <= t + 1e-9:
            rt = float(self._times[self._next])
            self._next += 1
            n_open = sum(o.status == "open" for o in self._orders.values())
            if n_open >= self.cfg.max_open or len(self._pickable) == 0:
                continue
            out.append(self._new(rt))
        if self.backlog_target > 0:
            n_open = self.n_open
            while n_open < self.backlog_target and self._free_faces():
                out.append(self._new(float(t)))
                n_open += 1
        return out

    def _free_faces(self) -> list[int]:
        """Pick points (indices) that no open or assigned order uses."""
        busy = {o.pick_cell for o in self._orders.values() if o.status in ("open", "assigned")}
        return [
            k
            for k in self._pickable
            if tuple(int(v) for v in self.layout.pick_points[k]) not in busy
        ]

    def _new(self, t: float) -> Order:
        cand = self._free_faces()
        pool = cand if cand else list(self._pickable)
        k = int(pool[int(self._rng.integers(len(pool)))])
        st = self.layout.stations[int(self._rng.integers(len(self.layout.stations)))]
        pick = (int(self.layout.pick_points[k, 0]), int(self.layout.pick_points[k, 1]))
        o = Order(
            id=len(self._orders),
            pick_cell=pick,
            shelf_cell=(int(self.layout.pick_shelf[k, 0]), int(self.layout.pick_shelf[k, 1])),
            station_cell=(int(st[0]), int(st[1])),
            release_t=t,
            deadline_t=t + self.cfg.order_deadline_s,
            load_cell=pick,
        )
        self._orders[o.id] = o
        return o

    def expire_due(self, t: float) -> list[Order]:
        """Expire open orders past their deadline; returns them (none with a backlog: the
        queue keeps its orders until a robot serves them)."""
        self._t = max(self._t, float(t))
        out: list[Order] = []
        if self.backlog_target > 0:
            return out
        for o in list(self._orders.values()):
            if o.status == "open" and t > o.deadline_t:
                out.append(self._set(o, status="expired", load_cell=None))
        return out

    # ---- transitions ----------------------------------------------------------------
    def _set(self, o: Order, **kw: object) -> Order:
        n = replace(o, **kw)  # type: ignore[arg-type]
        self._orders[o.id] = n
        return n

    def assign(self, order_id: int, robot: int) -> Order:
        """Assign (or reassign) an order; an earlier not-yet-picked order of the robot reopens.

        Raises:
            ValueError: the order is not assignable or the robot carries another load.
        """
        o = self.get(order_id)
        if o.status not in ASSIGNABLE:
            raise ValueError(
                f"order_id: order {order_id} is {o.status}; assignable: open, assigned, dropped"
            )
        cur = self.active_of(robot)
        if cur is not None and cur.id != order_id:
            if cur.status == "carried":
                raise ValueError(f"robot_id: robot {robot} carries order {cur.id}; drop it first")
            self._set(cur, status="open" if cur.status == "assigned" else "dropped", robot=None)
        return self._set(o, status="dropped" if o.status == "dropped" else "assigned", robot=robot,
                         assigned_t=self._t if o.assigned_t is None else o.assigned_t)

    def picked(self, order_id: int, robot: int, t: float) -> Order:
        o = self.get(order_id)
        return self._set(
            o,
            status="carried",
            robot=robot,
            load_cell=None,
            picked_t=o.picked_t if o.picked_t is not None else t,
        )

    def dropped(self, order_id: int, cell: Cell) -> Order:
        return self._set(self.get(order_id), status="dropped", load_cell=cell)

    def delivered(self, order_id: int, t: float) -> Order:
        return self._set(self.get(order_id), status="delivered", delivered_t=t, load_cell=None)

    def arrays(self) -> dict[str, np.ndarray]:
        """Columns for KPIs: release_t [O], deadline_t [O], delivered [O] bool, delivered_t [O].

        With a backlog, ``release_t`` is the start of the order's service clock, its first
        assignment (nan if never assigned), and ``deadline_t`` = that + ``order_deadline_s``
        (module docstring: the queue's waiting time is not the fleet's).
        """
        os_ = self.orders
        if self.backlog_target > 0:
            start = np.array(
                [np.nan if o.assigned_t is None else o.assigned_t for o in os_], dtype=np.float64
            )
            deadline = start + self.cfg.order_deadline_s
        else:
            start = np.array([o.release_t for o in os_], dtype=np.float64)
            deadline = np.array([o.deadline_t for o in os_], dtype=np.float64)
        return {
            "release_t": start,
            "deadline_t": deadline,
            "delivered": np.array([o.status == "delivered" for o in os_], dtype=bool),
            "delivered_t": np.array(
                [np.nan if o.delivered_t is None else o.delivered_t for o in os_]
            ),
        }
