"""Cell locking (zone control), the traffic rule of classic AGV fleet managers.

A robot may only drive into grid cells it holds. Each tick it keeps the cells its
footprint still overlaps and requests, in route order, the cells within its stopping
window ahead; it stops at the centre of the last cell it could lock. Locks are exclusive,
so two robots never share a cell, whatever their timing; a cycle of robots waiting for
each other's cells (deadlock) is broken by the navigator's recovery (clear + replan).

Example:
    >>> locks = CellLocks()
    >>> locks.acquire(0, [(1, 1), (1, 2)])
    2
    >>> locks.acquire(1, [(1, 3), (1, 2)])
    1
    >>> locks.holder((1, 2))
    0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["CellLocks"]

Cell = tuple[int, int]


class CellLocks:
    """Exclusive cell locks of a fleet (one table shared by every navigator)."""

    def __init__(self) -> None:
        self._holder: dict[Cell, int] = {}
        self._held: dict[int, set[Cell]] = {}

    def holder(self, cell: Cell) -> int | None:
        """Robot holding ``cell`` (None if free)."""
        return self._holder.get((int(cell[0]), int(cell[1])))

    def held_by(self, robot_id: int) -> set[Cell]:
        """Cells held by ``robot_id`` (a copy)."""
        return set(self._held.get(robot_id, ()))

    def acquire(self, robot_id: int, cells: Sequence[Cell]) -> int:
        """Lock ``cells`` in order, stopping at the first one held by another robot.

        Returns:
            How many leading cells of ``cells`` ``robot_id`` now holds.
        """
        mine = self._held.setdefault(robot_id, set())
        for k, cell in enumerate(cells):
            c = (int(cell[0]), int(cell[1]))
            owner = self._holder.get(c)
            if owner is not None and owner != robot_id:
                return k
            self._holder[c] = robot_id
            mine.add(c)
        return len(cells)

    def keep_only(self, robot_id: int, cells: Iterable[Cell]) -> None:
        """Release every lock of ``robot_id`` except ``cells`` (cells it does not hold stay free)."""
        keep = {(int(c[0]), int(c[1])) for c in cells}
        mine = self._held.get(robot_id, set())
        for c in list(mine - keep):
            mine.discard(c)
            if self._holder.get(c) == robot_id:
                del self._holder[c]

    def release(self, robot_id: int) -> None:
        """Release every lock of ``robot_id``."""
        self.keep_only(robot_id, ())
