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
    """

    def __init__(
        self, cfg: OrdersConfig, layout: Layout, duration_s: float, rng: np.random.Generator
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self._rng = rng
        self._pickable = layout.connected_pick_points()  # [P'] indices
        self._times = poisson_release_times(cfg.rate_per_min, duration_s, cfg.n_initial, rng)
        self._next = 0
        self._orders: dict[int, Order] = {}

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
    def release_due(self, t: float) -> list[Order]:
        """Release every order whose time has come (skipped while ``max_open`` wait)."""
        out = []
        while self._next < len(self._times) and self._times[self._next] <= t + 1e-9:
            rt = float(self._times[self._next])
            self._next += 1
            n_open = sum(o.status == "open" for o in self._orders.values())
            if n_open >= self.cfg.max_open or len(self._pickable) == 0:
                continue
            out.append(self._new(rt))
        return out

    def _new(self, t: float) -> Order:
        busy = {o.pick_cell for o in self._orders.values() if o.status in ("open", "assigned")}
        cand = [
            k
            for k in self._pickable
            if tuple(int(v) for v in self.layout.pick_points[k]) not in busy
        ]
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
        """Expire open orders past their deadline; returns them."""
        out = []
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
        return self._set(o, status="dropped" if o.status == "dropped" else "assigned", robot=robot)

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
        """Columns for KPIs: release_t [O], deadline_t [O], delivered [O] bool, delivered_t [O]."""
        os_ = self.orders
        return {
            "release_t": np.array([o.release_t for o in os_], dtype=np.float64),
            "deadline_t": np.array([o.deadline_t for o in os_], dtype=np.float64),
            "delivered": np.array([o.status == "delivered" for o in os_], dtype=bool),
            "delivered_t": np.array(
                [np.nan if o.delivered_t is None else o.delivered_t for o in os_]
            ),
        }
