"""Task features of one robot: ``proprio``, ``occupancy``, ``action_mask`` (pure numpy).

Same keys, shapes and definitions as the planner's grid model (``planning.grid_model``
``GridModel.encode``, ``forklift/GridWarehouse-v0``), so a policy trained on the grid model
reads the simulator env unchanged (``tests/sim/test_envs.py`` checks the two against each
other). ``sim`` does not import ``planning``; the definitions are repeated here. All
world-aligned: x east, y north.

``proprio`` [12] float32:
    ``[0:2]``  cell-centre position ``(x / width_m, y / height_m)`` in [0, 1]
    ``[2:6]``  heading one-hot (east, north, west, south): the robot's yaw rounded to the
               nearest axis (after a move the robot faces the move, as in the grid model)
    ``[6:8]``  velocity ``(vx, vy) / nominal speed`` over the last step: macro mode, the
               cell displacement of the last macro (a unit vector if it moved one cell,
               else 0); twist mode, the true planar velocity / ``NOMINAL_SPEED_MPS``;
               clipped to [-1, 1]
    ``[8:10]`` goal vector ``(dx, dy) / max(width_m, height_m)`` from the robot's cell
               centre to its load cell (empty) or station (loaded); 0 without an order
    ``[10]``   load flag
    ``[11]``   time fraction ``t / duration_s`` in [0, 1]
``occupancy`` [S, S] float32 (``S = crop_size``, odd), ``occupancy[i, j]`` = cell
    ``(row + i - S//2, col + j - S//2)`` (i grows north, j east; the robot at the centre):
    1.0 static obstacle or off the map, 0.5 known blockage (pallet), 0.25 another robot,
    0.0 free.
``action_mask`` [7] int8, 1 = legal :class:`~sim.types.MacroAction`: moves into drivable
    cells without a known pallet (other robots are not masked: they move); WAIT always;
    PICK on the order's load cell when empty; DROP on the order's station when loaded.
    (int8, as ``gymnasium.spaces.Discrete.sample(mask=...)`` and PettingZoo require.)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from sim.layout import Layout
from sim.types import ACTION_DELTAS, N_ACTIONS, MacroAction

Cell = tuple[int, int]
PROPRIO_DIM: int = 12
OCC_STATIC, OCC_BLOCKAGE, OCC_ROBOT = 1.0, 0.5, 0.25
NOMINAL_SPEED_MPS: float = 1.0  # the grid model's default nominal speed (m/s)
_AXES = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], np.float32)  # E, N, W, S


def heading_index(yaw: float) -> int:
    """Yaw (rad) -> nearest axis index in (east, north, west, south)."""
    return int(np.round(yaw / (np.pi / 2))) % 4


class TaskEncoder:
    """Grid task features of a robot in ``layout`` (see the module docstring).

    Args:
        layout: floor plan.
        crop_size: side of the occupancy crop (cells, odd).
    """

    def __init__(self, layout: Layout, *, crop_size: int = 11) -> None:
        self.layout = layout
        self.crop = int(crop_size)
        h = self.crop // 2
        self._static = np.pad(layout.occupancy.astype(np.float32), h, constant_values=OCC_STATIC)
        self._size_m = np.array(layout.size_m, np.float32)  # (width, height)
        self._goal_scale = np.float32(max(layout.size_m))

    def spaces(self) -> dict[str, gym.spaces.Space]:
        s = self.crop
        return {
            "proprio": gym.spaces.Box(-1.0, 1.0, (PROPRIO_DIM,), dtype=np.float32),
            "occupancy": gym.spaces.Box(0.0, 1.0, (s, s), dtype=np.float32),
            "action_mask": gym.spaces.Box(0, 1, (N_ACTIONS,), dtype=np.int8),
        }

    def action_mask(self, cell: Cell, *, pallets: np.ndarray, load: bool, pick: Cell | None,
                    station: Cell | None) -> np.ndarray:
        """[7] int8 legal actions.

        Args:
            cell: the robot's (row, col).
            pallets: [P, 2] known pallet cells.
            load: carrying the order's load.
            pick: where the order's load waits (None: no order / nothing to pick).
            station: the order's station (None: no order).
        """
        m = np.zeros(N_ACTIONS, dtype=np.int8)
        nb = np.asarray(cell, dtype=np.int64)[None] + ACTION_DELTAS[:4]  # [4, 2]
        ok = self.layout.is_free(nb)
        p = np.asarray(pallets, dtype=np.int64).reshape(-1, 2)
        if len(p):
            ok &= ~(nb[:, None, :] == p[None]).all(-1).any(-1)
        m[:4] = ok
        m[MacroAction.WAIT] = 1
        here = (int(cell[0]), int(cell[1]))
        m[MacroAction.PICK] = (not load) and pick is not None and tuple(pick) == here
        m[MacroAction.DROP] = load and station is not None and tuple(station) == here
        return m

    def encode(self, cell: Cell, *, heading: int, velocity: np.ndarray, load: bool,
               pick: Cell | None, station: Cell | None, pallets: np.ndarray, others: np.ndarray,
               time_frac: float) -> dict[str, np.ndarray]:
        """``proprio``, ``occupancy`` and ``action_mask`` of one robot.

        Args:
            cell: the robot's (row, col).
            heading: index into (east, north, west, south), see :func:`heading_index`.
            velocity: [2] (vx, vy) / nominal speed.
            load: carrying the order's load.
            pick: the order's load cell (None: no order).
            station: the order's station (None: no order).
            pallets: [P, 2] known pallet cells.
            others: [R, 2] cells of the other robots.
            time_frac: t / duration in [0, 1].
        """
        r, c = int(cell[0]), int(cell[1])
        xy = self.layout.cell_to_xy(np.array([r, c])).astype(np.float32)
        prop = np.zeros(PROPRIO_DIM, dtype=np.float32)
        prop[0:2] = xy / self._size_m
        prop[2 + heading] = 1.0
        prop[6:8] = np.clip(np.asarray(velocity, np.float32), -1.0, 1.0)
        goal = station if load else pick
        if goal is not None:
            prop[8:10] = (self.layout.cell_to_xy(np.array(goal)).astype(np.float32) - xy) / self._goal_scale
        prop[10] = float(load)
        prop[11] = float(np.clip(time_frac, 0.0, 1.0))
        occ = self._static[r:r + self.crop, c:c + self.crop].copy()  # padded: (r, c) is the centre
        self._paint(occ, np.asarray(pallets).reshape(-1, 2), r, c, OCC_BLOCKAGE)
        self._paint(occ, np.asarray(others).reshape(-1, 2), r, c, OCC_ROBOT)
        return {"proprio": np.clip(prop, -1.0, 1.0), "occupancy": occ,
                "action_mask": self.action_mask(cell, pallets=pallets, load=load, pick=pick, station=station)}

    def _paint(self, plane: np.ndarray, cells: np.ndarray, r: int, c: int, value: float) -> None:
        if len(cells) == 0:
            return
        d = cells.astype(np.int64) - np.array([r, c]) + self.crop // 2
        d = d[(d >= 0).all(1) & (d < self.crop).all(1)]
        cur = plane[d[:, 0], d[:, 1]]
        plane[d[:, 0], d[:, 1]] = np.where(cur == OCC_STATIC, cur, value)
