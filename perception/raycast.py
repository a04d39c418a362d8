"""Vectorised 2D ray casting against an occupancy grid and axis-aligned boxes (numpy).

Used by the synthetic lidar (:mod:`perception.synthetic`) and by free-space carving in
the blockage detector (:mod:`perception.obstacles`). Grid convention as in
:mod:`sim.layout`: cell (row, col) spans ``[col*cs, (col+1)*cs] x [row*cs, (row+1)*cs]``;
cells outside the grid are solid.
"""

from __future__ import annotations

import numpy as np


def raycast_grid(
    occupancy: np.ndarray,
    cell_size: float,
    origin: np.ndarray,
    angles: np.ndarray,
    max_range: float,
) -> np.ndarray:
    """Exact distance along each ray to the first occupied cell (Amanatides-Woo DDA).

    All rays advance together, one cell boundary per iteration.

    Args:
        occupancy: [H, W] bool, True = solid.
        cell_size: metres per cell.
        origin: [2] ray origin (m), world frame.
        angles: [N] world-frame ray directions (rad).
        max_range: metres.

    Returns:
        [N] hit distances (m); ``inf`` where nothing is hit within ``max_range``. A ray
        starting inside a solid cell returns 0.
    """
    h, w = occupancy.shape
    n = len(angles)
    d = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # [N, 2]
    o = np.asarray(origin, dtype=np.float64) / cell_size
    cell = np.floor(o).astype(np.int64)  # (cx, cy)
    step = np.where(d >= 0, 1, -1).astype(np.int64)  # [N, 2]
    with np.errstate(divide="ignore"):
        inv = np.where(np.abs(d) > 1e-12, 1.0 / np.abs(d), np.inf)
    nxt = np.where(step > 0, cell + 1 - o, o - cell)  # distance (cells) to first boundary / |d|
    t_max = nxt * inv  # [N, 2] in cells
    t_delta = inv
    cx = np.full(n, cell[0])
    cy = np.full(n, cell[1])
    out = np.full(n, np.inf)
    t = np.zeros(n)
    active = np.ones(n, dtype=bool)

    def solid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        res = np.ones(len(x), dtype=bool)
        res[inside] = occupancy[y[inside], x[inside]]
        return res

    hit0 = solid(cx, cy)
    out[hit0] = 0.0
    active &= ~hit0
    limit = max_range / cell_size
    for _ in range(2 * (h + w) + 4):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        ax = t_max[idx, 0] <= t_max[idx, 1]
        t[idx] = np.where(ax, t_max[idx, 0], t_max[idx, 1])
        cx[idx] += np.where(ax, step[idx, 0], 0)
        cy[idx] += np.where(ax, 0, step[idx, 1])
        t_max[idx, 0] += np.where(ax, t_delta[idx, 0], 0.0)
        t_max[idx, 1] += np.where(ax, 0.0, t_delta[idx, 1])
        far = t[idx] > limit
        hit = solid(cx[idx], cy[idx]) & ~far
        out[idx[hit]] = t[idx[hit]] * cell_size
        active[idx[hit | far]] = False
    out[out > max_range] = np.inf
    return out


def raycast_boxes(origin: np.ndarray, angles: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Distance along each ray to the nearest axis-aligned box (slab method).

    Args:
        origin: [2] (m).
        angles: [N] world-frame directions (rad).
        boxes: [B, 4] (xmin, ymin, xmax, ymax) (m).

    Returns:
        [N] distances (m), ``inf`` where no box is hit (a ray starting inside a box: 0).
    """
    n = len(angles)
    if len(boxes) == 0:
        return np.full(n, np.inf)
    d = np.stack([np.cos(angles), np.sin(angles)], axis=-1)[:, None, :]  # [N, 1, 2]
    o = np.asarray(origin, dtype=np.float64)
    lo = boxes[None, :, :2] - o
    hi = boxes[None, :, 2:] - o
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = lo * inv, hi * inv
    t_lo, t_hi = np.minimum(t1, t2), np.maximum(t1, t2)
    par = np.abs(d) < 1e-12  # ray parallel to a slab: inside it always, or never
    inside = (lo <= 0) & (hi >= 0)
    t_lo = np.where(par, np.where(inside, -np.inf, np.inf), t_lo)
    t_hi = np.where(par, np.where(inside, np.inf, -np.inf), t_hi)
    t_near = t_lo.max(axis=-1)  # [N, B]
    t_far = t_hi.min(axis=-1)
    hit = t_far >= np.maximum(t_near, 0.0)
    t = np.where(hit, np.maximum(t_near, 0.0), np.inf)
    return t.min(axis=-1)


def ray_cells(
    origin: np.ndarray, ends: np.ndarray, resolution: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Cells crossed by segments from ``origin`` to each end point (dense sampling).

    Samples every half cell along each segment, excluding the last half cell (the end
    point's own cell is the caller's business).

    Args:
        origin: [2] (m).
        ends: [N, 2] segment ends (m).
        resolution: cell size (m) of the target grid.
        shape: (H, W) of the target grid.

    Returns:
        (rows [M], cols [M]) unique in-bounds cells crossed.
    """
    o = np.asarray(origin, dtype=np.float64)
    seg = ends - o
    length = np.hypot(seg[:, 0], seg[:, 1])
    if len(length) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    step = 0.5 * resolution
    n_s = int(np.ceil(length.max() / step)) + 1
    s = np.arange(n_s) * step  # [S]
    keep = s[None, :] < (length[:, None] - step)  # [N, S]
    u = seg / np.maximum(length, 1e-12)[:, None]
    px = o[0] + u[:, 0:1] * s[None, :]
    py = o[1] + u[:, 1:2] * s[None, :]
    cols = np.floor(px[keep] / resolution).astype(np.int64)
    rows = np.floor(py[keep] / resolution).astype(np.int64)
    ok = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    lin = np.unique(rows[ok] * shape[1] + cols[ok])
    return lin // shape[1], lin % shape[1]
