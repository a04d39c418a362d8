"""PyBullet facade: the only module of the repository that imports ``pybullet``.

A :class:`World` owns one physics client (DIRECT by default, GUI with ``gui=True``);
several worlds can live in one process. Bodies are addressed by name; each body has a
*kind* (``static``, ``robot``, ``load``, ``pallet``, ``person``, ``floor``) used to
classify contacts and to filter rays.

Robots are planar multibodies: a massless fixed base at the world origin, then
prismatic-x, prismatic-y and revolute-z joints carrying the chassis box. The joints are
driven by force-limited velocity motors inside the constraint solver (traction limit
``mu * m * g``), so robots move only through physics and every contact comes from the
engine; there is no teleporting. The chassis floats ``clearance`` above the floor, so the
floor carries no robot contacts. Joint positions are the world pose (x, y, yaw).

Collision groups (bit 1 is reserved: pybullet casts rays with group 1, so a body that
rays should see has bit 1 in its mask):
    static 2, robot 4, load 8, pallet 16, person 32, floor 64.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pybullet as p
from typing_extensions import Self

RAY_BIT = 1
G_STATIC = 2
G_ROBOT = 4
G_LOAD = 8
G_PALLET = 16
G_PERSON = 32
G_FLOOR = 64

#: group and mask per body kind (mask bit 1 = visible to rays).
_FILTERS: dict[str, tuple[int, int]] = {
    "floor": (G_FLOOR, G_LOAD),
    "static": (G_STATIC, RAY_BIT | G_ROBOT | G_LOAD),
    "robot": (G_ROBOT, RAY_BIT | G_STATIC | G_ROBOT | G_PALLET | G_PERSON),
    "load": (G_LOAD, G_FLOOR | G_STATIC | G_PALLET),
    "pallet": (G_PALLET, RAY_BIT | G_ROBOT | G_LOAD),
    "person": (G_PERSON, RAY_BIT | G_ROBOT),
}
#: what a lidar sees: walls/shelves, robots, pallets, people (not loads, not the floor).
LIDAR_MASK: int = G_STATIC | G_ROBOT | G_PALLET | G_PERSON
MAX_RAYS_PER_BATCH: int = 16384  # pybullet MAX_RAY_INTERSECTION_BATCH_SIZE
CHASSIS_LINK: int = 2
_FIRST, _THIRD = operator.itemgetter(0), operator.itemgetter(2)


@dataclass(frozen=True)
class RobotBodySpec:
    """Physical robot body.

    Attributes:
        size: footprint side (m); height: chassis height (m); mass: kg.
        clearance: gap between chassis and floor (m).
        max_force: drive force limit per axis (N), e.g. traction ``mu * m * g``.
        max_torque: yaw torque limit (N m).
        rgba: colour.
    """

    size: float = 0.6
    height: float = 0.3
    mass: float = 100.0
    clearance: float = 0.005
    max_force: float = 490.0
    max_torque: float = 120.0
    rgba: tuple[float, float, float, float] = (0.95, 0.55, 0.1, 1.0)


@dataclass(frozen=True)
class Contacts:
    """Contact points of one physics step (see :meth:`World.contacts`).

    Attributes:
        body_a, body_b: [K] int64 body ids of the two bodies (order as the engine reports it).
        pos_a, pos_b: [K, 3] world contact points on A and on B (m).
        normal_b: [K, 3] unit contact normal on B, pointing from B towards A.
        distance: [K] gap (m), negative = penetration.
    """

    body_a: np.ndarray
    body_b: np.ndarray
    pos_a: np.ndarray
    pos_b: np.ndarray
    normal_b: np.ndarray
    distance: np.ndarray

    @staticmethod
    def empty() -> Contacts:
        z, v = np.zeros(0, dtype=np.int64), np.zeros((0, 3))
        return Contacts(z, z.copy(), v, v.copy(), v.copy(), np.zeros(0))

    def __len__(self) -> int:
        return len(self.body_a)


class World:
    """One PyBullet client with named bodies.

    Args:
        gui: open the PyBullet GUI instead of DIRECT.
        physics_hz: fixed physics step rate (Hz).
        solver_iterations: constraint-solver iterations per physics step.
        gravity: m/s^2 along -z.
    """

    def __init__(
        self,
        *,
        gui: bool = False,
        physics_hz: float = 240.0,
        solver_iterations: int = 10,
        gravity: float = 9.81,
    ) -> None:
        self._client: int | None = p.connect(p.GUI if gui else p.DIRECT)
        self.physics_dt = 1.0 / physics_hz
        self._solver_iterations = solver_iterations
        self._gravity = gravity
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._kinds: dict[int, str] = {}
        self._constraints: dict[str, int] = {}
        self._robot_force: dict[int, tuple[float, float]] = {}
        self.reset()
        if gui:
            self._call(p.configureDebugVisualizer, p.COV_ENABLE_GUI, 0)

    def reset(self) -> None:
        """Remove every body and constraint (``resetSimulation``) and restore the parameters."""
        self._call(p.resetSimulation)
        self._ids.clear()
        self._names.clear()
        self._kinds.clear()
        self._constraints.clear()
        self._robot_force.clear()
        self._call(p.setGravity, 0.0, 0.0, -self._gravity)
        self._call(
            p.setPhysicsEngineParameter,
            fixedTimeStep=self.physics_dt,
            numSolverIterations=self._solver_iterations,
            deterministicOverlappingPairs=1,
        )

    # ---- lifecycle ---------------------------------------------------------------
    @property
    def client(self) -> int:
        """The PyBullet client id. Raises RuntimeError once closed."""
        if self._client is None:
            raise RuntimeError("World is closed")
        return self._client

    @property
    def closed(self) -> bool:
        return self._client is None

    def close(self) -> None:
        """Disconnect; safe to call more than once."""
        if self._client is not None:
            try:
                p.disconnect(physicsClientId=self._client)
            finally:
                self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; close() is the contract
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def _call(self, fn, *args, **kwargs):
        return fn(*args, physicsClientId=self.client, **kwargs)

    # ---- names -------------------------------------------------------------------
    def body(self, name: str) -> int:
        """Body id of ``name`` (KeyError if unknown)."""
        return self._ids[name]

    def has(self, name: str) -> bool:
        return name in self._ids

    def name_of(self, body_id: int) -> str | None:
        return self._names.get(body_id)

    def kind_of(self, body_id: int) -> str | None:
        """Kind of a body id (``static``, ``robot``, ...), None if not ours."""
        return self._kinds.get(body_id)

    def names(self, kind: str | None = None) -> list[str]:
        """Body names in creation order, optionally of one kind."""
        return [n for n, i in self._ids.items() if kind is None or self._kinds[i] == kind]

    def _register(self, name: str, body_id: int, kind: str) -> int:
        if name in self._ids:
            raise ValueError(f"body name {name!r} already exists")
        if body_id < 0:
            raise RuntimeError(f"pybullet failed to create body {name!r}")
        self._ids[name] = body_id
        self._names[body_id] = name
        self._kinds[body_id] = kind
        if kind in _FILTERS:
            self.set_kind_filter(name, kind)
        return body_id

    def set_kind_filter(self, name: str, kind: str, *, collide: bool = True) -> None:
        """Apply the collision group/mask of ``kind`` (mask 0 when ``collide`` is False)."""
        bid = self._ids[name]
        group, mask = _FILTERS[kind]
        link = CHASSIS_LINK if self._kinds[bid] == "robot" else -1
        self._call(p.setCollisionFilterGroupMask, bid, link, group, mask if collide else 0)

    # ---- creation ----------------------------------------------------------------
    def add_floor(self, name: str = "floor", *, friction: float = 0.8) -> int:
        """Infinite plane z = 0 with lateral ``friction``."""
        shape = self._call(p.createCollisionShape, p.GEOM_PLANE)
        bid = self._call(p.createMultiBody, 0, shape)
        self._call(p.changeDynamics, bid, -1, lateralFriction=friction)
        return self._register(name, bid, "floor")

    def add_box(
        self,
        name: str,
        half_extents: Sequence[float],
        position: Sequence[float],
        *,
        yaw: float = 0.0,
        mass: float = 0.0,
        kind: str = "static",
        rgba: Sequence[float] = (0.6, 0.6, 0.6, 1.0),
        friction: float = 0.6,
        visual: bool = True,
    ) -> int:
        """Box body; ``mass = 0`` makes it static (or kinematic, moved by :meth:`set_pose`).

        Args:
            half_extents: [3] m. position: [3] m, box centre. yaw: rad.
        """
        col = self._call(p.createCollisionShape, p.GEOM_BOX, halfExtents=list(half_extents))
        vis = (
            self._call(
                p.createVisualShape,
                p.GEOM_BOX,
                halfExtents=list(half_extents),
                rgbaColor=list(rgba),
            )
            if visual
            else -1
        )
        bid = self._call(
            p.createMultiBody,
            mass,
            col,
            vis,
            list(position),
            p.getQuaternionFromEuler([0.0, 0.0, yaw]),
        )
        self._call(p.changeDynamics, bid, -1, lateralFriction=friction, restitution=0.0)
        return self._register(name, bid, kind)

    def add_marker(
        self,
        name: str,
        half_extents: Sequence[float],
        position: Sequence[float],
        *,
        rgba: Sequence[float] = (0.3, 0.7, 0.3, 1.0),
    ) -> int:
        """Visual-only box (no collision shape, invisible to rays): stations, floor paint."""
        vis = self._call(
            p.createVisualShape, p.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=list(rgba)
        )
        bid = self._call(p.createMultiBody, 0.0, -1, vis, list(position))
        return self._register(name, bid, "marker")

    def add_robot(self, name: str, x: float, y: float, yaw: float, spec: RobotBodySpec) -> int:
        """Planar differential-drive robot body at pose (x, y, yaw); see module docstring."""
        h = spec.size / 2.0
        col = self._call(p.createCollisionShape, p.GEOM_BOX, halfExtents=[h, h, spec.height / 2])
        vis = self._call(
            p.createVisualShape,
            p.GEOM_BOX,
            halfExtents=[h, h, spec.height / 2],
            rgbaColor=list(spec.rgba),
        )
        z = spec.clearance + spec.height / 2
        ident = [0.0, 0.0, 0.0, 1.0]
        bid = self._call(
            p.createMultiBody,
            baseMass=0.0,
            baseCollisionShapeIndex=-1,
            baseVisualShapeIndex=-1,
            basePosition=[0.0, 0.0, z],
            linkMasses=[1e-3, 1e-3, spec.mass],
            linkCollisionShapeIndices=[-1, -1, col],
            linkVisualShapeIndices=[-1, -1, vis],
            linkPositions=[[0.0, 0.0, 0.0]] * 3,
            linkOrientations=[ident] * 3,
            linkInertialFramePositions=[[0.0, 0.0, 0.0]] * 3,
            linkInertialFrameOrientations=[ident] * 3,
            linkParentIndices=[0, 1, 2],
            linkJointTypes=[p.JOINT_PRISMATIC, p.JOINT_PRISMATIC, p.JOINT_REVOLUTE],
            linkJointAxis=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        )
        for j in range(3):
            self._call(
                p.changeDynamics,
                bid,
                j,
                linearDamping=0.0,
                angularDamping=0.0,
                jointDamping=0.0,
                restitution=0.0,
                lateralFriction=0.5,
            )
        self._register(name, bid, "robot")
        self._robot_force[bid] = (spec.max_force, spec.max_torque)
        self.reset_robot(name, x, y, yaw)
        return bid

    def remove(self, name: str) -> None:
        """Remove a body (and forget its name)."""
        bid = self._ids.pop(name)
        del self._names[bid], self._kinds[bid]
        self._robot_force.pop(bid, None)
        self._call(p.removeBody, bid)

    # ---- state -------------------------------------------------------------------
    def reset_robot(self, name: str, x: float, y: float, yaw: float) -> None:
        """Place a robot at rest (setup only, not for driving)."""
        bid = self._ids[name]
        for j, q in enumerate((x, y, yaw)):
            self._call(p.resetJointState, bid, j, q, 0.0)
        self.drive(name, 0.0, 0.0, 0.0)

    def robot_state(self, name: str) -> np.ndarray:
        """[6] (x, y, yaw, vx, vy, w): world pose (m, rad; yaw unwrapped) and velocity."""
        js = self._call(p.getJointStates, self._ids[name], (0, 1, 2))
        return np.array([js[0][0], js[1][0], js[2][0], js[0][1], js[1][1], js[2][1]])

    def robot_states(self, names: Sequence[str]) -> np.ndarray:
        """[N, 6] :meth:`robot_state` for several robots (one query per robot)."""
        out = np.empty((len(names), 6))
        gjs, cid = p.getJointStates, self.client
        for i, n in enumerate(names):
            (x, vx, *_), (y, vy, *_), (a, w, *_) = gjs(self._ids[n], (0, 1, 2), physicsClientId=cid)
            out[i] = (x, y, a, vx, vy, w)
        return out

    def drive(self, name: str, vx: float, vy: float, w: float) -> None:
        """Set the world-frame velocity targets of a robot's force-limited motors (m/s, rad/s)."""
        bid = self._ids[name]
        f, t = self._robot_force[bid]
        p.setJointMotorControlArray(
            bid,
            (0, 1, 2),
            p.VELOCITY_CONTROL,
            targetVelocities=(vx, vy, w),
            forces=(f, f, t),
            physicsClientId=self.client,
        )

    def pose(self, name: str) -> tuple[np.ndarray, float]:
        """(position [3] m, yaw rad) of a rigid body's base."""
        pos, orn = self._call(p.getBasePositionAndOrientation, self._ids[name])
        return np.array(pos), p.getEulerFromQuaternion(orn)[2]

    def set_pose(self, name: str, position: Sequence[float], yaw: float = 0.0) -> None:
        """Reset a rigid body's base pose and zero its velocity (kinematic bodies, setup)."""
        bid = self._ids[name]
        self._call(
            p.resetBasePositionAndOrientation,
            bid,
            list(position),
            p.getQuaternionFromEuler([0.0, 0.0, yaw]),
        )
        self._call(p.resetBaseVelocity, bid, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])

    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps of ``physics_dt``."""
        cid, st = self.client, p.stepSimulation
        for _ in range(n):
            st(physicsClientId=cid)

    # ---- constraints -------------------------------------------------------------
    def attach(self, name: str, parent: str, child: str, offset: Sequence[float]) -> None:
        """Fixed joint: ``child`` rides on ``parent`` at ``offset`` [3] (m, parent frame).

        The child is first placed at the offset so the constraint starts satisfied.
        """
        pb, cb = self._ids[parent], self._ids[child]
        link = CHASSIS_LINK if self._kinds[pb] == "robot" else -1
        if link == CHASSIS_LINK:
            st = self.robot_state(parent)
            c, s = math.cos(st[2]), math.sin(st[2])
            base_z = self._call(p.getLinkState, pb, CHASSIS_LINK)[0][2]
            pos = [
                st[0] + c * offset[0] - s * offset[1],
                st[1] + s * offset[0] + c * offset[1],
                base_z + offset[2],
            ]
            self.set_pose(child, pos, float(st[2]))
        cid = self._call(
            p.createConstraint, pb, link, cb, -1, p.JOINT_FIXED, [0, 0, 0], list(offset), [0, 0, 0]
        )
        self._constraints[name] = cid

    def detach(self, name: str) -> None:
        """Remove a constraint created by :meth:`attach` (no-op if absent)."""
        cid = self._constraints.pop(name, None)
        if cid is not None:
            self._call(p.removeConstraint, cid)

    # ---- queries -----------------------------------------------------------------
    def ray_batch(
        self, origins: np.ndarray, ends: np.ndarray, *, mask: int = LIDAR_MASK
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cast rays, chunked by pybullet's batch limit.

        Args:
            origins, ends: [R, 3] world points (m).
            mask: collision groups the rays may hit.

        Returns:
            (hit body id [R] int64, -1 = none; hit fraction [R] in [0, 1], 1 = none).
        """
        n = len(origins)
        bodies = np.empty(n, dtype=np.int64)
        frac = np.empty(n)
        for s in range(0, n, MAX_RAYS_PER_BATCH):
            e = min(n, s + MAX_RAYS_PER_BATCH)
            o_l, e_l = np.stack([origins[s:e], ends[s:e]]).tolist()
            res = p.rayTestBatch(
                o_l, e_l, numThreads=1, collisionFilterMask=mask, physicsClientId=self.client
            )
            bodies[s:e] = np.fromiter(map(_FIRST, res), np.int64, e - s)
            frac[s:e] = np.fromiter(map(_THIRD, res), np.float64, e - s)
        return bodies, frac

    def cast_rays_raw(self, origins: list, ends: list) -> tuple:
        """Unprocessed ``rayTestBatch`` of lists of [x, y, z] (the benchmark's raw baseline)."""
        return p.rayTestBatch(
            origins, ends, numThreads=1, collisionFilterMask=LIDAR_MASK, physicsClientId=self.client
        )

    def contacts(self, max_distance: float = 1e-3) -> Contacts:
        """All contact points of the world with a gap <= ``max_distance`` m (penetration < 0),
        from one ``getContactPoints`` call (the manifolds of the last physics step)."""
        pts = [c for c in self._call(p.getContactPoints) if c[8] <= max_distance]
        if not pts:
            return Contacts.empty()
        ids = np.array([(c[1], c[2]) for c in pts], dtype=np.int64)  # [K, 2]
        geo = np.array([(c[5], c[6], c[7]) for c in pts], dtype=np.float64)  # [K, 3, 3]
        return Contacts(body_a=ids[:, 0], body_b=ids[:, 1], pos_a=geo[:, 0], pos_b=geo[:, 1],
                        normal_b=geo[:, 2], distance=np.array([c[8] for c in pts], dtype=np.float64))

    def contact_bodies(self, name: str, max_distance: float = 1e-3) -> set[int]:
        """Ids of bodies touching ``name`` (penetration or gap <= ``max_distance`` m)."""
        out: set[int] = set()
        for c in self._call(p.getContactPoints, bodyA=self._ids[name]):
            if c[8] <= max_distance:
                out.add(c[2])
        return out

    def camera(
        self,
        eye: Sequence[float],
        target: Sequence[float],
        *,
        width: int,
        height: int,
        fov_deg: float,
        near: float,
        far: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render with ER_TINY_RENDERER.

        Returns:
            (rgb [H, W, 3] uint8, depth [H, W] float32 metres, ``inf`` at the far plane).
        """
        view = p.computeViewMatrix(list(eye), list(target), [0.0, 0.0, 1.0])
        proj = p.computeProjectionMatrixFOV(fov_deg, width / height, near, far)
        _, _, rgba, zbuf, _ = self._call(
            p.getCameraImage, width, height, view, proj, renderer=p.ER_TINY_RENDERER
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()
        z = np.asarray(zbuf, dtype=np.float64).reshape(height, width)
        depth = far * near / (far - (far - near) * z)
        depth[z >= 1.0 - 1e-7] = np.inf
        return rgb, depth.astype(np.float32)

    @contextmanager
    def no_rendering(self) -> Iterator[None]:
        """Suspend GUI rendering while building many bodies (no-op in DIRECT)."""
        self._call(p.configureDebugVisualizer, p.COV_ENABLE_RENDERING, 0)
        try:
            yield
        finally:
            if self._client is not None:
                self._call(p.configureDebugVisualizer, p.COV_ENABLE_RENDERING, 1)

    def add_grid_boxes(
        self,
        prefix: str,
        mask: np.ndarray,
        cell: float,
        height: float,
        *,
        kind: str = "static",
        rgba: Sequence[float] = (0.6, 0.6, 0.6, 1.0),
    ) -> list[str]:
        """One static box per maximal rectangle of True cells of ``mask`` [H, W].

        Cell (r, c) spans x in [c, c+1) * cell, y in [r, r+1) * cell. Returns the names.
        """
        names = []
        for k, (r0, c0, r1, c1) in enumerate(merge_rectangles(mask)):
            half = [(c1 - c0) * cell / 2, (r1 - r0) * cell / 2, height / 2]
            centre = [(c0 + c1) * cell / 2, (r0 + r1) * cell / 2, height / 2]
            name = f"{prefix}_{k}"
            self.add_box(name, half, centre, kind=kind, rgba=rgba)
            names.append(name)
        return names


def merge_rectangles(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Greedy cover of the True cells of ``mask`` [H, W] by disjoint rectangles.

    Returns:
        (row0, col0, row1, col1) half-open rectangles, in row-major order of their corner.
    """
    todo = np.array(mask, dtype=bool)
    h, w = todo.shape
    out = []
    for r in range(h):
        c = 0
        while c < w:
            if not todo[r, c]:
                c += 1
                continue
            c1 = c
            while c1 < w and todo[r, c1]:
                c1 += 1
            r1 = r + 1
            while r1 < h and todo[r1, c:c1].all():
                r1 += 1
            todo[r:r1, c:c1] = False
            out.append((r, c, r1, c1))
            c = c1
    return out
