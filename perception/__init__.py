"""Perception: multi-sensor localization (filterpy EKF/UKF), obstacle and blockage detection.

Public API (one :class:`Localizer` per robot, one :class:`BlockageDetector` per fleet)::

    from perception import Localizer, LocalizerConfig, BlockageDetector

    loc = Localizer(layout, LocalizerConfig(kind="ekf"), initial_pose)
    pose = loc.update(frame)                      # Pose: x, y, yaw, cov [3, 3], health
    blockages = detector.update(pose, frame.lidar, frame.stamp)

Everything here imports numpy / scipy / filterpy and ``sim.types`` / ``sim.layout`` only.
"""

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
from perception.localization import SENSOR_NAMES, FilterEstimate, Localizer, LocalizerConfig, LocalizerStats
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

# fusion exports added by the lead

__all__ = [
    # localization
    "Localizer",
    "LocalizerConfig",
    "LocalizerStats",
    "FilterEstimate",
    "SENSOR_NAMES",
    # scan matching and relocalization
    "MapField",
    "ScanMatch",
    "ScanMatchConfig",
    "match_scan",
    "scan_points",
    "PositionFix",
    "multilaterate",
    # obstacles
    "Blockage",
    "BlockageConfig",
    "BlockageDetector",
    # evaluation
    "BlockageMetrics",
    "FilterMetrics",
    "InjectedBlockage",
    "LocalizationEvalResult",
    "OutageWindow",
    "RobotLog",
    "Trace",
    "evaluate_localization",
    "evaluate_synthetic",
    "logs_from_scenario",
    "plot_errors",
    # synthetic sensors (tests, benchmarks, evaluation without the simulator)
    "BoxObstacle",
    "Kidnap",
    "NoiseProfile",
    "Outage",
    "RobotRun",
    "Scenario",
    "ScenarioConfig",
    "SlipBurst",
    "degraded_config",
    "generate_scenario",
    "nominal_config",
]
