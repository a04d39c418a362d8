"""Warehouse layouts: a parametric generator and a MovingAI ``.map`` loader.

Pure numpy; no PyBullet. A :class:`Layout` is shared by the physics world
(``sim.world``) and the planner's grid model (``planning``): both read the same
cells, stations, pick points, fiducials and UWB anchors.

Grid convention: ``occupancy[row, col]``; cell (row, col) centre at
``((col + 0.5) * cell_size, (row + 0.5) * cell_size)`` metres; row grows with +y
(north), col with +x (east). The outer ring is wall.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.types import ACTION_DELTAS

ROBOT_FOOTPRINT_M: float = 0.6  # square robot side (m)
ROBOT_CLEARANCE_M: float = 0.1  # minimum free space beside a robot in an aisle (m)


Cell = tuple[int, int]


# ---- grid search: the one BFS of the project (planning.paths re-exports it) ---------------


class PaddedGrid:
    """A passability grid padded with a one-cell wall ring and flattened.

    Cell (r, c) has index ``(r + 1) * wp + c + 1``; its 4 neighbours are ``index + offset``
    with no bounds checks, offsets in :class:`sim.types.MacroAction` order N (row + 1),
    S, E, W. Shared by the BFS here and the A* searches of :mod:`planning.paths`.

    Attributes:
        h, w: grid shape; wp: padded width ``w + 2``.
        passable: [(h + 2) * wp] bool list (mutable: a search may open its start cell).
        offsets: (N, S, E, W) index offsets.
    """

    __slots__ = ("h", "offsets", "passable", "w", "wp")

    def __init__(self, free: np.ndarray, blocked: np.ndarray | None = None) -> None:
        free = np.asarray(free, dtype=bool)
        if free.ndim != 2:
            raise ValueError(f"free: shape {free.shape}; allowed a 2-D [H, W] bool array")
        ok = free if blocked is None else free & ~np.asarray(blocked, dtype=bool)
        self.h, self.w = free.shape
        self.wp = self.w + 2
        pad = np.zeros((self.h + 2, self.w + 2), dtype=bool)
        pad[1:-1, 1:-1] = ok
        self.passable: list[bool] = pad.ravel().tolist()
        self.offsets = (self.wp, -self.wp, 1, -1)

    def index(self, cell: Sequence[int]) -> int | None:
        """Padded index of (row, col), None outside the grid."""
        r, c = int(cell[0]), int(cell[1])
        if not (0 <= r < self.h and 0 <= c < self.w):
            return None
        return (r + 1) * self.wp + c + 1

    def cell(self, index: int) -> Cell:
        """(row, col) of a padded index."""
        r, c = divmod(index, self.wp)
        return (r - 1, c - 1)


def grid_bfs(g: PaddedGrid, src: int | None, stop: int | None = None) -> tuple[list[int], list[int]]:
    """Breadth-first search over ``g`` from the padded index ``src``.

    Neighbours are visited in ``g.offsets`` order, so parents (and paths) are deterministic.

    Args:
        g: the grid (``src`` is searched from even if it is not passable only when the
            caller opened it in ``g.passable``).
        src: start index; None (outside the grid) or not passable gives an empty search.
        stop: optional target index: the search ends as soon as it is reached.

    Returns:
        (dist, parent) per padded index: steps from ``src`` (-1 unreached) and the
        previous index on a shortest path (-1 at ``src`` and where unreached).
    """
    n = len(g.passable)
    dist, parent = [-1] * n, [-1] * n
    if src is None or not g.passable[src]:
        return dist, parent
    dist[src] = 0
    q = deque([src])
    passable, offsets = g.passable, g.offsets
    while q:
        u = q.popleft()
        if u == stop:
            break
        du = dist[u] + 1
        for off in offsets:
            v = u + off
            if passable[v] and dist[v] < 0:
                dist[v] = du
                parent[v] = u
                q.append(v)
    return dist, parent


def bfs_distances(free: np.ndarray, source: Cell, *, blocked: np.ndarray | None = None) -> np.ndarray:
    """Shortest 4-connected step counts between ``source`` and every cell (unit moves).

    Args:
        free: [H, W] bool drivable cells.
        source: (row, col) (e.g. the goal of a distance-to-goal field).
        blocked: optional [H, W] bool extra obstacles (e.g. known blockages).

    Returns:
        [H, W] int64 distances in steps; -1 where unreachable (everywhere if ``source``
        is outside the grid or not passable).
    """
    g = PaddedGrid(free, blocked)
    dist, _ = grid_bfs(g, g.index(source))
    out = np.asarray(dist, dtype=np.int64).reshape(g.h + 2, g.wp)[1:-1, 1:-1]
    return np.ascontiguousarray(out)


def bfs_path(free: np.ndarray, start: Cell, goal: Cell, *, blocked: np.ndarray | None = None
             ) -> list[Cell] | None:
    """Shortest 4-connected path (breadth first, N, S, E, W order: deterministic).

    Args:
        free: [H, W] bool drivable cells.
        start: (row, col); may be undrivable or blocked (a robot or person stands there).
        goal: (row, col); must be drivable and not blocked.
        blocked: optional [H, W] bool extra obstacles.

    Returns:
        Cells from ``start`` to ``goal`` inclusive (``[start]`` if they are equal), or
        None if ``goal`` is unreachable or either cell lies outside the grid.
    """
    g = PaddedGrid(free, blocked)
    s, t = g.index(start), g.index(goal)
    if s is None or t is None:
        return None
    if s == t:
        return [g.cell(s)]
    if not g.passable[t]:
        return None
    g.passable[s] = True
    dist, parent = grid_bfs(g, s, stop=t)
    if dist[t] < 0:
        return None
    out = [t]
    while out[-1] != s:
        out.append(parent[out[-1]])
    return [g.cell(i) for i in reversed(out)]


class LayoutError(ValueError):
    """An invalid layout; the message is one line naming the field and what is allowed."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class LayoutConfig:
    """Parameters of the generated warehouse (lengths in metres).

    Shelf blocks form ``shelf_rows x shelf_cols``; each block is ``block_length`` (x)
    by ``block_depth`` (y) metres. Aisles (between block columns) run north-south;
    cross-aisles (between block rows and around the array) run east-west.
    """

    cell_size: float = 1.0
    shelf_rows: int = 2
    shelf_cols: int = 3
    block_length: float = 4.0
    block_depth: float = 2.0
    aisle_width: float = 1.0
    cross_aisle_width: float = 2.0
    n_stations: int = 3
    n_chargers: int = 4
    staging_depth: float = 2.0  # free band along the south wall where stations sit (m)
    fiducial_pitch: float = 1.0  # m; floor codes at cell centres on this pitch
    n_uwb_anchors: int = 6
    uwb_anchor_height: float = 2.5  # m
    movingai_map: str | None = None  # path to a MovingAI .map; overrides the generator


@dataclass(frozen=True, eq=False)
class Layout:
    """A warehouse floor plan.

    Attributes:
        cell_size: metres per grid cell.
        occupancy: [H, W] bool, True = blocked (wall or shelf).
        shelves: [H, W] bool, True = shelf cell (subset of occupancy).
        stations: [S, 2] int (row, col) drop-off cells (drivable).
        pick_points: [P, 2] int (row, col) drivable cells facing a shelf.
        pick_shelf: [P, 2] int (row, col) shelf cell that each pick point faces.
        chargers: [C, 2] int (row, col) charging spots (drivable).
        fiducials: [M, 2] float world (x, y) of floor codes (m); the id is the index.
        uwb_anchors: [K, 3] float world (x, y, z) of UWB anchors (m).
    """

    cell_size: float
    occupancy: np.ndarray
    shelves: np.ndarray
    stations: np.ndarray
    pick_points: np.ndarray
    pick_shelf: np.ndarray
    chargers: np.ndarray
    fiducials: np.ndarray
    uwb_anchors: np.ndarray
    name: str = "generated"
    _free_index: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        idx = np.full(self.occupancy.shape, -1, dtype=np.int64)
        free = ~self.occupancy
        idx[free] = np.arange(int(free.sum()))
        object.__setattr__(self, "_free_index", idx)
        for arr in (self.occupancy, self.shelves, self.stations, self.pick_points,
                    self.pick_shelf, self.chargers, self.fiducials, self.uwb_anchors,
                    self._free_index):
            arr.setflags(write=False)

    # ---- geometry -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in cells."""
        return self.occupancy.shape  # type: ignore[return-value]

    @property
    def size_m(self) -> tuple[float, float]:
        """(width_x, height_y) in metres."""
        h, w = self.shape
        return w * self.cell_size, h * self.cell_size

    @property
    def free(self) -> np.ndarray:
        """[H, W] bool drivable cells."""
        return ~self.occupancy

    @property
    def free_cells(self) -> np.ndarray:
        """[F, 2] int (row, col) of drivable cells, row-major order."""
        return np.argwhere(~self.occupancy)

    @property
    def free_index(self) -> np.ndarray:
        """[H, W] int: index of each free cell in ``free_cells``; -1 if blocked."""
        return self._free_index

    def cell_to_xy(self, cells: np.ndarray) -> np.ndarray:
        """(row, col) [..., 2] -> world (x, y) [..., 2] of the cell centres (m)."""
        cells = np.asarray(cells)
        return (cells[..., ::-1].astype(np.float64) + 0.5) * self.cell_size

    def xy_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """World (x, y) [..., 2] (m) -> (row, col) [..., 2] int (may lie outside the grid)."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.floor(xy[..., ::-1] / self.cell_size).astype(np.int64)

    def in_bounds(self, cells: np.ndarray) -> np.ndarray:
        """[..., 2] (row, col) -> [...] bool inside the grid."""
        cells = np.asarray(cells)
        h, w = self.shape
        return (cells[..., 0] >= 0) & (cells[..., 0] < h) & (cells[..., 1] >= 0) & (cells[..., 1] < w)

    def is_free(self, cells: np.ndarray) -> np.ndarray:
        """[..., 2] (row, col) -> [...] bool drivable (False outside the grid)."""
        cells = np.asarray(cells)
        ok = self.in_bounds(cells)
        out = np.zeros(ok.shape, dtype=bool)
        out[ok] = ~self.occupancy[cells[..., 0][ok], cells[..., 1][ok]]
        return out

    def move_mask(self) -> np.ndarray:
        """[H, W, 4] bool: moving N/S/E/W from each cell lands on a free cell."""
        h, w = self.shape
        rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        out = np.zeros((h, w, 4), dtype=bool)
        for a in range(4):
            dst = np.stack([rr + ACTION_DELTAS[a, 0], cc + ACTION_DELTAS[a, 1]], axis=-1)
            out[..., a] = self.is_free(dst) & self.free
        return out

    def reachable_from(self, cell: tuple[int, int] | np.ndarray) -> np.ndarray:
        """[H, W] bool: cells reachable from ``cell`` by 4-connected moves (:func:`bfs_distances`)."""
        return bfs_distances(self.free, (int(cell[0]), int(cell[1]))) >= 0

    def start_cells(self, n_robots: int) -> np.ndarray:
        """[n, 2] deterministic start cells: chargers first, then free cells far from stations.

        Raises:
            LayoutError: more robots than drivable cells.
        """
        free = self.free_cells
        if n_robots > len(free):
            raise LayoutError("n_robots", f"{n_robots} robots but only {len(free)} free cells; allowed <= {len(free)}")
        taken = {tuple(c) for c in self.chargers[:n_robots]}
        out = [tuple(c) for c in self.chargers[:n_robots]]
        for c in free[::-1]:  # north first: away from the stations on the south wall
            if len(out) >= n_robots:
                break
            t = (int(c[0]), int(c[1]))
            if t not in taken and not any((self.stations == c).all(axis=1)):
                out.append(t)
                taken.add(t)
        for c in free:  # tiny maps: allow station cells too
            if len(out) >= n_robots:
                break
            t = (int(c[0]), int(c[1]))
            if t not in taken:
                out.append(t)
                taken.add(t)
        return np.array(out, dtype=np.int64).reshape(-1, 2)

    def validate(self, n_robots: int = 1) -> None:
        """Raise :class:`LayoutError` if robots cannot work here."""
        if len(self.stations) == 0:
            raise LayoutError("layout.n_stations", "no station cells; allowed >= 1")
        if len(self.pick_points) == 0:
            raise LayoutError("layout", "no shelf face is reachable; need at least one shelf next to a free cell")
        reach = self.reachable_from(self.stations[0])
        for s in self.stations:
            if not reach[s[0], s[1]]:
                raise LayoutError("layout.stations", f"station at cell {tuple(int(v) for v in s)} is unreachable from the others")
        if not reach[self.pick_points[:, 0], self.pick_points[:, 1]].any():
            raise LayoutError("layout.stations", "stations are unreachable from every pick point")
        n_free = int(reach.sum())
        if n_robots > n_free:
            raise LayoutError("n_robots", f"{n_robots} robots but only {n_free} connected free cells; allowed <= {n_free}")

    def connected_pick_points(self) -> np.ndarray:
        """[P'] int indices of pick points reachable from the first station."""
        reach = self.reachable_from(self.stations[0])
        return np.flatnonzero(reach[self.pick_points[:, 0], self.pick_points[:, 1]])


# ---- construction ---------------------------------------------------------------

def _cells(value_m: float, cell: float, name: str, minimum: int = 1) -> int:
    n = value_m / cell
    if abs(n - round(n)) > 1e-6:
        raise LayoutError(name, f"{value_m} m is not a multiple of layout.cell_size={cell} m")
    if round(n) < minimum:
        raise LayoutError(name, f"{value_m} m is below the minimum {minimum * cell} m")
    return int(round(n))


def _pick_points(occ: np.ndarray, shelves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = occ.shape
    pts, faces = [], []
    for r, c in np.argwhere(shelves):
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not occ[nr, nc]:
                pts.append((nr, nc))
                faces.append((r, c))
    return np.array(pts, dtype=np.int64).reshape(-1, 2), np.array(faces, dtype=np.int64).reshape(-1, 2)


def _fiducials(occ: np.ndarray, cell: float, pitch: float) -> np.ndarray:
    h, w = occ.shape
    xs = np.arange(pitch / 2, w * cell, pitch)
    ys = np.arange(pitch / 2, h * cell, pitch)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    cells = np.floor(pts[:, ::-1] / cell).astype(int)
    keep = ~occ[cells[:, 0], cells[:, 1]]
    return pts[keep]


def _uwb_anchors(h: int, w: int, cell: float, n: int, z: float) -> np.ndarray:
    """Anchors spread along the inside of the walls (perimeter, evenly by arc length)."""
    if n < 3:
        raise LayoutError("layout.n_uwb_anchors", f"{n}; allowed >= 3 (multilateration needs three)")
    x0, y0, x1, y1 = cell * 0.5, cell * 0.5, w * cell - cell * 0.5, h * cell - cell * 0.5
    per = 2 * ((x1 - x0) + (y1 - y0))
    out = []
    for i in range(n):
        s = per * (i + 0.5) / n
        for (ax, ay, bx, by) in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
            seg = abs(bx - ax) + abs(by - ay)
            if s <= seg:
                t = s / seg
                out.append((ax + t * (bx - ax), ay + t * (by - ay), z))
                break
            s -= seg
    return np.array(out, dtype=np.float64)


def _spread(cols: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or len(cols) == 0:
        return cols[:0]
    idx = np.unique(np.round(np.linspace(0, len(cols) - 1, n + 2)[1:-1]).astype(int))
    return cols[idx]


def generate_layout(cfg: LayoutConfig) -> Layout:
    """Build the parametric warehouse described by ``cfg``.

    Raises:
        LayoutError: a dimension is not a positive multiple of the cell size, an aisle is
            narrower than a robot, or the stations do not fit.
    """
    if cfg.movingai_map:
        return load_movingai(cfg.movingai_map, cell_size=cfg.cell_size, n_stations=cfg.n_stations,
                             n_chargers=cfg.n_chargers, fiducial_pitch=cfg.fiducial_pitch,
                             n_uwb_anchors=cfg.n_uwb_anchors, uwb_anchor_height=cfg.uwb_anchor_height)
    s = cfg.cell_size
    if not s > 0:
        raise LayoutError("layout.cell_size", f"{s}; allowed > 0 m")
    if s < ROBOT_FOOTPRINT_M + ROBOT_CLEARANCE_M and cfg.aisle_width <= s:
        pass  # checked below through aisle widths
    for name, val in (("layout.aisle_width", cfg.aisle_width), ("layout.cross_aisle_width", cfg.cross_aisle_width)):
        if val < ROBOT_FOOTPRINT_M + ROBOT_CLEARANCE_M:
            raise LayoutError(name, f"{val} m is narrower than a robot ({ROBOT_FOOTPRINT_M} m + "
                                    f"{ROBOT_CLEARANCE_M} m clearance); allowed >= {ROBOT_FOOTPRINT_M + ROBOT_CLEARANCE_M} m")
    for name, val in (("layout.shelf_rows", cfg.shelf_rows), ("layout.shelf_cols", cfg.shelf_cols)):
        if val < 1:
            raise LayoutError(name, f"{val}; allowed >= 1")
    if cfg.n_stations < 1:
        raise LayoutError("layout.n_stations", f"{cfg.n_stations}; allowed >= 1")
    if cfg.n_chargers < 0:
        raise LayoutError("layout.n_chargers", f"{cfg.n_chargers}; allowed >= 0")
    bl = _cells(cfg.block_length, s, "layout.block_length")
    bd = _cells(cfg.block_depth, s, "layout.block_depth")
    aw = _cells(cfg.aisle_width, s, "layout.aisle_width")
    cw = _cells(cfg.cross_aisle_width, s, "layout.cross_aisle_width")
    sd = _cells(cfg.staging_depth, s, "layout.staging_depth", minimum=0)
    if cfg.fiducial_pitch <= 0:
        raise LayoutError("layout.fiducial_pitch", f"{cfg.fiducial_pitch}; allowed > 0 m")

    # interior: [cross | block | cross | ... | block | cross] in y, [cross| block | aisle ...| cross] in x
    inner_w = cw + cfg.shelf_cols * bl + (cfg.shelf_cols - 1) * aw + cw
    inner_h = sd + cw + cfg.shelf_rows * bd + (cfg.shelf_rows - 1) * cw + cw
    h, w = inner_h + 2, inner_w + 2
    occ = np.zeros((h, w), dtype=bool)
    occ[0, :] = occ[-1, :] = occ[:, 0] = occ[:, -1] = True
    shelves = np.zeros_like(occ)
    for i in range(cfg.shelf_rows):
        r0 = 1 + sd + cw + i * (bd + cw)
        for j in range(cfg.shelf_cols):
            c0 = 1 + cw + j * (bl + aw)
            shelves[r0:r0 + bd, c0:c0 + bl] = True
    occ |= shelves
    free_south = np.flatnonzero(~occ[1])
    if cfg.n_stations > len(free_south):
        raise LayoutError("layout.n_stations", f"{cfg.n_stations} stations do not fit on the south wall; allowed <= {len(free_south)}")
    stations = np.array([(1, c) for c in _spread(free_south, cfg.n_stations)], dtype=np.int64).reshape(-1, 2)
    free_north = np.flatnonzero(~occ[h - 2])
    chargers = np.array([(h - 2, c) for c in _spread(free_north, min(cfg.n_chargers, len(free_north)))],
                        dtype=np.int64).reshape(-1, 2)
    pick, face = _pick_points(occ, shelves)
    return Layout(
        cell_size=s, occupancy=occ, shelves=shelves, stations=stations, pick_points=pick,
        pick_shelf=face, chargers=chargers, fiducials=_fiducials(occ, s, cfg.fiducial_pitch),
        uwb_anchors=_uwb_anchors(h, w, s, cfg.n_uwb_anchors, cfg.uwb_anchor_height),
    )


_MOVINGAI_FREE = set(".GS")
_MOVINGAI_BLOCKED = set("@OTW")


def load_movingai(path: str | Path, *, cell_size: float = 1.0, n_stations: int = 3, n_chargers: int = 4,
                  fiducial_pitch: float = 1.0, n_uwb_anchors: int = 6, uwb_anchor_height: float = 2.5) -> Layout:
    """Load a MovingAI MAPF benchmark ``.map`` (``type octile``/height/width/map, then rows).

    ``.``, ``G``, ``S`` are free; ``@``, ``O``, ``T``, ``W`` blocked. Blocked cells that
    touch a free cell and do not lie on the map border are shelves. The map's first row is
    its north edge. A wall ring is added around the map. Stations are spread along the
    southernmost row that has free cells; chargers along the northernmost.

    Raises:
        LayoutError: the file is malformed (field ``layout.movingai_map``).
    """
    p = Path(path)
    fld = "layout.movingai_map"
    if not p.is_file():
        raise LayoutError(fld, f"{str(p)!r} is not a file")
    lines = p.read_text().splitlines()
    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() != "map":
        parts = lines[i].split()
        if len(parts) == 2:
            header[parts[0]] = parts[1]
        elif parts:
            raise LayoutError(fld, f"line {i + 1}: expected 'key value' header, got {lines[i]!r}")
        i += 1
    try:
        h, w = int(header["height"]), int(header["width"])
    except (KeyError, ValueError):
        raise LayoutError(fld, "header needs integer 'height' and 'width' before 'map'") from None
    rows = [ln.rstrip("\r\n") for ln in lines[i + 1:i + 1 + h]]
    if i >= len(lines) or len(rows) != h or any(len(r) < w for r in rows):
        raise LayoutError(fld, f"expected {h} rows of {w} cells after 'map'")
    grid = np.zeros((h, w), dtype=bool)
    for r, row in enumerate(rows):
        for c, ch in enumerate(row[:w]):
            if ch in _MOVINGAI_BLOCKED:
                grid[r, c] = True
            elif ch not in _MOVINGAI_FREE:
                raise LayoutError(fld, f"row {r}, col {c}: unknown cell {ch!r}; allowed . G S @ O T W")
    grid = grid[::-1]  # first file row is north; our row 0 is south
    occ = np.ones((h + 2, w + 2), dtype=bool)
    occ[1:-1, 1:-1] = grid
    shelves = np.zeros_like(occ)
    free = ~occ
    touch = np.zeros_like(occ)
    touch[1:, :] |= free[:-1, :]
    touch[:-1, :] |= free[1:, :]
    touch[:, 1:] |= free[:, :-1]
    touch[:, :-1] |= free[:, 1:]
    shelves[2:-2, 2:-2] = (occ & touch)[2:-2, 2:-2]
    free_rows = np.flatnonzero(free.any(axis=1))
    if len(free_rows) == 0:
        raise LayoutError(fld, "map has no free cells")
    south, north = free_rows[0], free_rows[-1]
    stations = np.array([(south, c) for c in _spread(np.flatnonzero(free[south]), n_stations)],
                        dtype=np.int64).reshape(-1, 2)
    chargers = np.array([(north, c) for c in _spread(np.flatnonzero(free[north]), n_chargers)],
                        dtype=np.int64).reshape(-1, 2)
    pick, face = _pick_points(occ, shelves)
    return Layout(
        cell_size=cell_size, occupancy=occ, shelves=shelves, stations=stations, pick_points=pick,
        pick_shelf=face, chargers=chargers, fiducials=_fiducials(occ, cell_size, fiducial_pitch),
        uwb_anchors=_uwb_anchors(h + 2, w + 2, cell_size, n_uwb_anchors, uwb_anchor_height),
        name=p.stem,
    )


def ascii_art(layout: Layout) -> str:
    """North-up text picture: '#' wall, 'S' shelf, 'D' station, 'C' charger, '.' free."""
    h, w = layout.shape
    g = np.full((h, w), ".", dtype="<U1")
    g[layout.occupancy] = "#"
    g[layout.shelves] = "S"
    for r, c in layout.stations:
        g[r, c] = "D"
    for r, c in layout.chargers:
        g[r, c] = "C"
    return "\n".join("".join(row) for row in g[::-1])
