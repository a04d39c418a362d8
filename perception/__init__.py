"""Perception: multi-sensor localization (filterpy EKF/UKF), obstacle and blockage detection.

Public API (one :class:`Localizer` per robot, one :class:`BlockageDetector` per fleet)::

    from perception import Localizer, LocalizerConfig, BlockageDetector

    loc = Localizer(layout, LocalizerConfig(kind="ekf"), initial_pose)
    pose = loc.update(frame)                      # Pose: x, y, yaw, cov [3, 3], health
    blockages = detector.update(pose, frame.lidar, frame.stamp)

Everything here imports numpy / scipy / filterpy and ``sim.types`` / ``sim.layout`` only.
The learned cross-modal fusion (:class:`FusionEncoder`, :class:`FusionConfig`) needs torch
and the attention kernels: it is loaded on first attribute access (``perception.FusionEncoder``
or ``from perception import FusionEncoder``), so ``import perception`` and the classic
localization path never import torch or run the SDPA probes.
"""

import importlib
from typing import Any

from perception.evaluation import (
    BlockageMetrics,
    FilterMetrics,
    InjectedBlockage,
    LocalizationEvalResult,
    OutageWindow,
    RobotLog,
    Trace,
    evaluate_localization,
    evaluate_synthetic,
    logs_from_scenario,
    plot_errors,
)
from perception.localization import (
    SENSOR_NAMES,
    FilterEstimate,
    Localizer,
    LocalizerConfig,
    LocalizerStats,
)
from perception.obstacles import Blockage, BlockageConfig, BlockageDetector
from perception.relocalization import PositionFix, multilaterate
from perception.scan_match import MapField, ScanMatch, ScanMatchConfig, match_scan, scan_points
from perception.synthetic import (
    BoxObstacle,
    Kidnap,
    NoiseProfile,
    Outage,
    RobotRun,
    Scenario,
    ScenarioConfig,
    SlipBurst,
    degraded_config,
    generate_scenario,
    nominal_config,
)

#: public names of the network-side modules, loaded on first access (they import torch).
_LAZY: dict[str, str] = {"FusionConfig": "perception.fusion", "FusionEncoder": "perception.fusion"}


def __getattr__(name: str) -> Any:
    """Import a network-side name on first use (PEP 562) and cache it in the package."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    # learned cross-modal fusion
    "FusionConfig",
    "FusionEncoder",
    "SENSOR_NAMES",
    "Blockage",
    "BlockageConfig",
    "BlockageDetector",
    "BlockageMetrics",
    "BoxObstacle",
    "FilterEstimate",
    "FilterMetrics",
    "InjectedBlockage",
    "Kidnap",
    "LocalizationEvalResult",
    "Localizer",
    "LocalizerConfig",
    "LocalizerStats",
    "MapField",
    "NoiseProfile",
    "Outage",
    "OutageWindow",
    "PositionFix",
    "RobotLog",
    "RobotRun",
    "ScanMatch",
    "ScanMatchConfig",
    "Scenario",
    "ScenarioConfig",
    "SlipBurst",
    "Trace",
    "degraded_config",
    "evaluate_localization",
    "evaluate_synthetic",
    "generate_scenario",
    "logs_from_scenario",
    "match_scan",
    "multilaterate",
    "nominal_config",
    "plot_errors",
    "scan_points",
]
