"""Task features of one robot: ``proprio``, ``occupancy``, ``action_mask`` (pure numpy).

These keys have the same shapes and meaning as in the planner's grid model
(``planning.grid_model`` / ``forklift/GridWarehouse-v0``), so a policy trained on the grid
model reads the simulator env unchanged.

``proprio`` [9] float32:
    0-1  (row / H, col / W) of the robot's cell
    2-3  (cos yaw, sin yaw) of its heading
    4    has an order (assigned, carried or dropped)
    5    carrying a load
    6-7  (d_row / H, d_col / W) from the robot's cell to its target (the load cell,
         or the station when carrying); 0 without an order
    8    fraction of the episode time left, in [0, 1]
``occupancy`` [S, S] float32, a crop of side ``S = crop_size`` centred on the robot's
    cell: 1 = blocked (wall, shelf, known pallet, or off the map), 0 = drivable. Same
    orientation as ``Layout.occupancy``: crop ``[S // 2 + d_row, S // 2 + d_col]`` is the
    cell ``d_row`` rows north and ``d_col`` columns east of the robot (so ``np.flipud``
    shows it north up). Other robots are not in it (they move; the lidar sees them).
``action_mask`` [7] int8: 1 = legal. Moves: the neighbouring cell is drivable and holds no
    known pallet (other robots are not masked: they move). WAIT always. PICK: the robot's
    order waits at its cell (status assigned or dropped, ``load_cell`` = cell). DROP: the
    robot carries and stands on its order's station cell.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sim.layout import Layout
from sim.types import ACTION_DELTAS, N_ACTIONS, MacroAction

Cell = tuple[int, int]
PROPRIO_DIM: int = 9


class TaskEncoder:
    """Grid task features of a robot in ``layout``.

    Args:
        layout: floor plan.
        crop_size: side of the occupancy crop (cells, odd).
        duration_s: episode length (s), for the time-left feature.
    """

    def __init__(self, layout: Layout, *, crop_size: int = 11, duration_s: float = 120.0) -> None:
        self.layout = layout
        self.crop = int(crop_size)
        self.duration_s = float(duration_s)
        h = self.crop // 2
        self._static = np.pad(layout.occupancy.astype(np.float32), h, constant_values=1.0)  # [H+2h, W+2h]

    def spaces(self) -> dict[str, gym.spaces.Space]:
        s = self.crop
        return {
            "proprio": gym.spaces.Box(-1.0, 1.0, (PROPRIO_DIM,), dtype=np.float32),
            "occupancy": gym.spaces.Box(0.0, 1.0, (s, s), dtype=np.float32),
            "action_mask": gym.spaces.Box(0, 1, (N_ACTIONS,), dtype=np.int8),
        }

    def action_mask(self, cell: Cell, order: Any, pallets: np.ndarray) -> np.ndarray:
        """[7] int8 legal actions (see the module docstring)."""
        m = np.zeros(N_ACTIONS, dtype=np.int8)
        nb = np.asarray(cell)[None] + ACTION_DELTAS[:4]  # [4, 2]
        ok = self.layout.is_free(nb)
        p = np.asarray(pallets, dtype=np.int64).reshape(-1, 2)
        if len(p):
            ok &= ~(nb[:, None, :] == p[None]).all(-1).any(-1)
        m[:4] = ok
        m[MacroAction.WAIT] = 1
        if order is not None:
            status = order.status
            if status in ("assigned", "dropped") and tuple(order.load_cell or ()) == tuple(cell):
                m[MacroAction.PICK] = 1
            if status == "carried" and tuple(order.station_cell) == tuple(cell):
                m[MacroAction.DROP] = 1
        return m

    def encode(self, *, cell: Cell, yaw: float, order: Any, pallets: np.ndarray,
               time_s: float) -> dict[str, np.ndarray]:
        """``proprio``, ``occupancy`` and ``action_mask`` of one robot.

        Args:
            cell: the robot's (row, col).
            yaw: heading (rad).
            order: its active ``Order`` (assigned, carried or dropped) or None.
            pallets: [P, 2] known pallet cells.
            time_s: sim time (s).
        """
        hgt, wid = self.layout.shape
        r, c = int(cell[0]), int(cell[1])
        target = None
        if order is not None:
            target = order.station_cell if order.status == "carried" else order.load_cell
        prop = np.zeros(PROPRIO_DIM, dtype=np.float32)
        prop[0:4] = (r / hgt, c / wid, np.cos(yaw), np.sin(yaw))
        prop[4] = order is not None
        prop[5] = order is not None and order.status == "carried"
        if target is not None:
            prop[6:8] = ((target[0] - r) / hgt, (target[1] - c) / wid)
        prop[8] = np.clip(1.0 - time_s / self.duration_s, 0.0, 1.0)
        occ = self._static[r:r + self.crop, c:c + self.crop].copy()  # padded: (r, c) is the centre
        self._stamp(occ, np.asarray(pallets).reshape(-1, 2), r, c)
        return {"proprio": np.clip(prop, -1.0, 1.0), "occupancy": occ,
                "action_mask": self.action_mask(cell, order, pallets)}

    def _stamp(self, plane: np.ndarray, cells: np.ndarray, r: int, c: int) -> None:
        h = self.crop // 2
        if len(cells) == 0:
            return
        d = cells.astype(np.int64) - np.array([r, c]) + h
        ok = (d >= 0).all(1) & (d < self.crop).all(1)
        plane[d[ok, 0], d[ok, 1]] = 1.0
