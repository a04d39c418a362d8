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

from perception.fusion import FusionConfig, FusionEncoder

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
