"""The two extension points of the agent loop: :class:`Controller` and :class:`PoseSource`.

A controller drives the whole fleet of one simulator (or, through the ROS bridge, of a
real site): the runner calls ``reset(sim)`` once per episode, then ``act(frames, t)`` every
control tick and sends the returned twists. The classic baseline
(:class:`agent.baseline.BaselineController`) and the full learned stack implement it.

A pose source turns sensor frames into pose estimates: ground truth in simulation
(:class:`GroundTruthPose`, the default), or the localization engineer's filters
(:class:`LocalizerPose`, ``localization=ekf|ukf``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from sim.types import Pose, SensorFrame, TwistCmd

__all__ = ["Controller", "ControllerFactory", "Fleet", "GroundTruthPose", "LocalizationKind", "LocalizerPose",
           "PoseSource", "make_pose_source"]

LocalizationKind = Literal["ground_truth", "ekf", "ukf"]


@runtime_checkable
class Fleet(Protocol):
    """What a controller may use of the site: the WMS, the robots' actuators, nothing else.

    ``sim.warehouse.WarehouseSim`` implements it in simulation; the ROS bridge implements
    it over topics and services. Ground truth is not part of it.

    Attributes:
        layout: the floor plan (``sim.layout.Layout``); n_robots; dt: control period (s);
        time: current time (s); orders: the order book (``sim.types.Order`` list).
    """

    layout: Any
    n_robots: int
    dt: float
    time: float

    @property
    def orders(self) -> Sequence[Any]: ...

    def initial_poses(self) -> np.ndarray:
        """[N, 3] known start poses (x, y, yaw) at episode start."""

    def assign(self, order_id: int, robot_id: int) -> None:
        """Give an order to a robot (raises ValueError when the WMS refuses)."""

    def pick(self, robot_id: int) -> bool:
        """Try to pick the robot's load here; True on success."""

    def drop(self, robot_id: int) -> bool:
        """Try to deliver the carried load here; True on success."""

    def announce_route(self, robot_id: int, cells: Any) -> None:
        """Publish the robot's planned cells (fleet coordination, display)."""

    def report_pose_estimate(self, robot_id: int, pose: Pose) -> None:
        """Publish the robot's pose estimate (KPIs, display)."""


@runtime_checkable
class Controller(Protocol):
    """Fleet controller: one command per robot per control tick."""

    name: str

    def reset(self, sim: Any) -> None:
        """Start an episode on ``sim`` (a ``WarehouseSim``-like fleet interface)."""

    def act(self, frames: Sequence[SensorFrame], t: float) -> list[TwistCmd]:
        """Commands for every robot (index = ``robot_id``) given this tick's frames at sim time ``t`` (s)."""


ControllerFactory = Callable[[], Controller]


@runtime_checkable
class PoseSource(Protocol):
    """Pose estimates for every robot of a fleet."""

    def reset(self, sim: Any) -> None:
        """Start an episode (initial poses may be read once, like setting AMCL's initial pose)."""

    def update(self, frames: Sequence[SensorFrame]) -> list[Pose]:
        """One estimate per robot for this tick's frames."""


class GroundTruthPose:
    """Perfect localization from the simulator (``sim.ground_truth()``): the baseline's default."""

    def __init__(self) -> None:
        self._sim: Any = None

    def reset(self, sim: Any) -> None:
        self._sim = sim

    def update(self, frames: Sequence[SensorFrame]) -> list[Pose]:
        gt = np.asarray(self._sim.ground_truth(), dtype=np.float64)  # [N, 3]
        zero = np.zeros((3, 3))
        return [Pose(float(g[0]), float(g[1]), float(g[2]), cov=zero, health="ok", stamp=f.stamp)
                for g, f in zip(gt, frames)]


class LocalizerPose:
    """One ``perception.Localizer`` filter per robot, initialised at the known start pose.

    Args:
        kind: filter kind passed to ``perception.LocalizerConfig(kind=...)``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._filters: list[Any] = []

    def reset(self, sim: Any) -> None:
        from perception import Localizer, LocalizerConfig  # optional dependency of the agent

        gt = np.asarray(sim.initial_poses(), dtype=np.float64)
        cfg = LocalizerConfig(kind=self.kind)
        # Robots start docked at known cells: the start pose is known to ~1 cm / ~0.6 deg.
        cov0 = np.diag([1e-4, 1e-4, 1e-4])
        self._filters = [Localizer(sim.layout, cfg, Pose(float(g[0]), float(g[1]), float(g[2]), cov=cov0,
                                                         stamp=float(sim.time)))
                         for g in gt]

    def update(self, frames: Sequence[SensorFrame]) -> list[Pose]:
        return [f.update(fr) for f, fr in zip(self._filters, frames)]


def make_pose_source(kind: LocalizationKind) -> PoseSource:
    """``ground_truth`` -> :class:`GroundTruthPose`; ``ekf`` / ``ukf`` -> :class:`LocalizerPose`."""
    if kind == "ground_truth":
        return GroundTruthPose()
    if kind in ("ekf", "ukf"):
        return LocalizerPose(kind)
    raise ValueError(f"localization: {kind!r}; allowed 'ground_truth', 'ekf', 'ukf'")
