"""forklift.agent: the loop that ties the stack together.

Public API: the :class:`Controller` / :class:`PoseSource` protocols, the classic baseline
(:class:`BaselineController`), the episode runner (:func:`run_episodes`) and the ``forklift``
CLI (:func:`agent.cli.main`). Importing ``agent`` does not import PyBullet or hydra; the
simulator is imported when an episode runs, hydra when the CLI composes a config.
"""

from __future__ import annotations

from agent.baseline import BaselineConfig, BaselineController, TaskState
from agent.control import (
    Controller,
    ControllerFactory,
    GroundTruthPose,
    LocalizerPose,
    PoseSource,
    make_pose_source,
)
from sim.dispatch import Assignment, greedy_assign
from agent.navigation import NavConfig, Navigator, NavStatus, RecoveryConfig, RoutePlannerConfig
from agent.runner import EpisodeResult, RunConfig, RunResult, aggregate_kpis, run_episodes
from sim.safety import SafetyConfig
from agent.traffic import CellLocks

__all__ = [
    "Assignment",
    "BaselineConfig",
    "BaselineController",
    "CellLocks",
    "Controller",
    "ControllerFactory",
    "EpisodeResult",
    "GroundTruthPose",
    "LocalizerPose",
    "NavConfig",
    "NavStatus",
    "Navigator",
    "PoseSource",
    "RecoveryConfig",
    "RoutePlannerConfig",
    "RunConfig",
    "RunResult",
    "SafetyConfig",
    "TaskState",
    "aggregate_kpis",
    "greedy_assign",
    "make_pose_source",
    "run_episodes",
]
