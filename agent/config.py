"""Typed, validated application config: the bridge from hydra's tree to typed constructors.

Only :mod:`agent.cli` composes hydra configs. It hands the plain (resolved) dict to
:func:`build_app_config`, which checks every key, type, choice and range against the
frozen dataclass schemas below (the simulator's own ``sim.config`` dataclasses are the
schema of the sim part: the YAML mirrors them field by field) and returns an
:class:`AppConfig`; :func:`to_sim_config` / :func:`to_run_config` map it to the library's
constructor arguments. The library never sees a ``DictConfig``.

Bad input raises :class:`ConfigError` whose message is ONE line naming the field, the
value and what is allowed, e.g. ``episodes=-1: must be >= 1``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.baseline import BaselineConfig
from agent.control import LocalizationKind
from agent.runner import RunConfig
from agent.ros.config import RosSection
from sim.config import (
    FaultsConfig,
    OrdersConfig,
    RobotConfig,
    SensorsConfig,
    SimConfig,
    WorldConfig,
)
from sim.config import validate as validate_sim
from planning.situations import SITUATION_KINDS
from sim.layout import LayoutConfig, LayoutError, generate_layout

__all__ = ["AppConfig", "ConfigError", "build_app_config", "check_layout", "to_run_config", "to_sim_config"]


class ConfigError(ValueError):
    """One-line configuration error: ``<field>[=<value>]: <what is allowed>``."""

    def __init__(self, path: str, message: str, value: Any = dataclasses.MISSING) -> None:
        shown = path if value is dataclasses.MISSING else f"{path}={_fmt(value)}"
        super().__init__(f"{shown}: {message}" if path else message)
        self.path = path


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return "null" if v is None else str(v)


# ---- schemas (sections without a library dataclass) ---------------------------------------

@dataclass(frozen=True)
class SimSection:
    """The ``sim`` group: everything of ``SimConfig`` that has no group of its own."""

    world: WorldConfig = field(default_factory=WorldConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    pick_tolerance: float = 0.3
    pick_max_speed: float = 0.1


@dataclass(frozen=True)
class ShiftSection:
    """``scenario.shift`` (``scenario=shift``; ``forklift eval task=continual``): the site
    change in the middle of a run. ``forklift run`` ignores it (it runs the site as before).

    Attributes:
        closed_cells: [row, col] cells closed permanently: they become walls and the map
            the robots get is updated (a site operator closing an aisle).
        faults: exception injection after the change (the new blockage pattern).
    """

    closed_cells: tuple[tuple[int, ...], ...] = ()
    faults: FaultsConfig = field(default_factory=FaultsConfig)

    def __post_init__(self) -> None:
        for k, c in enumerate(self.closed_cells):
            if len(c) != 2:
                raise ConfigError(f"scenario.shift.closed_cells[{k}]", "must be a [row, col] pair", list(c))


@dataclass(frozen=True)
class ScenarioSection:
    """The ``scenario`` group: the name recorded in reports, the exception injection and,
    for ``shift``, the change of the site in the middle of the run."""

    name: Literal["nominal", "exceptions", "rush", "shift"] = "nominal"
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    shift: ShiftSection | None = None


@dataclass(frozen=True)
class LocalizationSection:
    """The ``localization`` group: pose source of the agent."""

    kind: LocalizationKind = "ekf"


@dataclass(frozen=True)
class AgentSection:
    """The ``agent`` group: which controller, and its parameters (by kind)."""

    kind: Literal["baseline"] = "baseline"
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


@dataclass(frozen=True)
class PlannerSection:
    """The ``planner`` group: who decides (``agent.planners``) and how the search runs.

    ``name``: ``mcts_rl`` (MCTS + network prior/value, the default), ``mcts_rollout``
    (MCTS + random rollouts), ``policy`` (network greedy, no search), ``classic`` (the
    classic stack, ``agent`` group). The search keys are ignored by ``policy`` and
    ``classic``. The network comes from ``learning.checkpoint`` (null = shipped weights).
    ``runtime``: where the network runs: ``onnx`` (default; onnxruntime, one thread, the
    graph exported and parity-checked from the safetensors weights and cached,
    ``learning.onnx_evaluator``) or ``torch``; ``learning=online`` always uses torch (it
    swaps torch weights while running).
    """

    name: Literal["mcts_rl", "mcts_rollout", "policy", "classic"] = "mcts_rl"
    algorithm: Literal["gumbel", "puct"] = "gumbel"
    num_simulations: int = 16
    max_depth: int = 24
    c_puct: float = 1.25
    c_scale: float = 0.1
    gumbel_scale: float = 0.0
    discount: float = 0.99
    rollout_depth: int = 20
    plan_horizon: int = 24
    max_blockages: int = 8
    wait_s: float = 0.25
    runtime: Literal["onnx", "torch"] = "onnx"


@dataclass(frozen=True)
class PerceptionSection:
    """The ``perception`` group: lidar blockage detection (``perception.obstacles``)."""

    blockage_dwell_s: float = 1.0
    blockage_subdivision: int = 5


@dataclass(frozen=True)
class LearnerSection:
    """``learning.learner``: the online learner's settings, field by field
    ``learning.online.OnlineConfig`` (docs there and in docs/ONLINE.md; a test checks the
    mirror: same names, types and defaults). Mirrored, not imported: ``import learning``
    loads torch, and the CLI validates before anything heavy is imported. The learner's
    seed is ``seed + learning.learner.seed``.
    """

    mode: Literal["lora", "full"] = "lora"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = (
        "encoder.blocks.*.cross_attn.*", "encoder.blocks.*.mlp.*",
        "policy_hidden", "policy_head", "value_hidden", "value_head",
    )
    ewc_lambda: float = 100.0
    fisher_samples: int = 256
    fisher_batch: int = 8
    recent_size: int = 4096
    reservoir_size: int = 16384
    replay_fraction: float = 0.5
    rehearsal_situations: int = 0
    rehearsal_fraction: float = 0.25
    rehearsal_value: Literal["production", "expert"] = "production"
    batch_size: int = 64
    steps_per_update: int = 50
    lr: float = 1e-3
    grad_clip: float = 1.0
    max_rel_change: float = 0.05
    min_samples: int = 256
    min_new_samples: int = 128
    update_interval_s: float = 5.0
    queue_size: int = 4096
    discount: float = 0.99
    value_weight: float = 1.0
    adv_temperature: float = 0.05
    adv_weight_max: float = 20.0
    gate_situations: int = 24
    gate_horizon: int = 60
    gate_simulations: int = 0
    gate_margin: float = 0.02
    gate_value_margin: float = 0.02
    gate_z: float = 2.0
    gate_min_value_gain: float = 0.01
    gate_require_gain: bool = True
    gate_kinds: tuple[str, ...] = SITUATION_KINDS
    kpi_keys: tuple[str, ...] = ("completion_rate",)
    kpi_window: int = 3
    kpi_drop: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        bad = sorted(set(self.gate_kinds) - set(SITUATION_KINDS))
        if bad or not self.gate_kinds:
            raise ConfigError("learning.learner.gate_kinds", "must be a non-empty list of "
                              + ", ".join(SITUATION_KINDS), list(self.gate_kinds))
        if not self.lora_targets:
            raise ConfigError("learning.learner.lora_targets", "must be a non-empty list of module "
                              "name patterns", [])
        if self.replay_fraction > 0 and self.reservoir_size == 0:
            raise ConfigError("learning.learner.reservoir_size", f"must be >= 1 with replay_fraction="
                              f"{self.replay_fraction} (or set replay_fraction=0)", 0)


@dataclass(frozen=True)
class LearningSection:
    """The ``learning`` group: the network and online learning (``learning=online``).

    Attributes:
        online: the agent hosts the online learner (``agent.online_hook``; planners
            ``mcts_rl`` and ``policy``): it learns from its own searches while it runs.
        checkpoint: network weights (``.safetensors``); null = the shipped weights.
        background: the learner runs in the background (production); false = it updates
            only between episodes, in the host's thread (reproducible from (config, seed)).
        worker: where the background learner runs: ``process`` (a spawned worker process:
            its training and gate never hold the control loop's GIL) or ``thread``.
        kpi_period_s: sim seconds between two live KPI reports (completion rate, orders per
            hour from the WMS's orders) to the learner's rollback monitor.
        learner: the learner's settings (:class:`LearnerSection`).
    """

    online: bool = False
    checkpoint: str | None = None
    background: bool = True
    worker: Literal["process", "thread"] = "process"
    kpi_period_s: float = 30.0
    learner: LearnerSection = field(default_factory=LearnerSection)


@dataclass(frozen=True)
class TrainSection:
    """The ``train`` group: RLlib training (``forklift train``; learning/rllib_adapter.py).

    Attributes:
        mode: ``local`` (a loopback-only Ray on this machine) or ``cluster`` (connect).
        address: cluster address (``auto`` or ``host:port``); local mode ignores it.
        algorithm: RLlib algorithm (PPO, APPO, IMPALA).
        iterations: training iterations in all stages.
        fleet_iterations: the last ``fleet_iterations`` of them fine-tune on the PyBullet
            fleet (``forklift/Fleet-v0``); the first ones pre-train on the grid fleet.
        num_env_runners: remote env runners; null = cores - 1 (>= 1) locally.
        num_envs_per_env_runner: envs stepped by each runner.
        num_cpus_per_env_runner / num_learners / num_gpus_per_learner: Ray resources.
        checkpoint_every: iterations between checkpoints (the last is always saved).
        lr: learning rate; gamma: discount; lambda_: GAE lambda; entropy_coeff: entropy bonus.
        train_batch_size: env steps per iteration; minibatch_size / num_epochs: SGD.
        rollout_fragment_length: steps per runner per sample request ("auto" = derived).
        grid_n_robots / grid_horizon_steps: grid stage fleet size and episode length.
        grid_clock: feed the grid stage the episode clock ``t / horizon`` (proprio[11]);
            false (default) = 0, as the agent's search model sees it (its horizon is
            10 000 steps, so the clock stays ~0): a critic that learned the clock ranks
            states by time left instead of by progress (docs/TRAINING.md).
        fleet_n_robots / fleet_duration_s: PyBullet stage fleet size and episode length (s).
        warm_start: ``.safetensors`` weights to start from (behaviour cloning warm start,
            e.g. learning/weights/grid_pv.safetensors); null = from scratch.
        max_env_runner_restarts: how often crashed env runners are restarted.
        num_cpus: local Ray's CPUs; null = the machine's cores.
        include_dashboard: start Ray's dashboard (local mode).
        resume: a checkpoint directory of this run to continue (``resume=PATH``).
    """

    mode: Literal["local", "cluster"] = "local"
    address: str | None = None
    algorithm: str = "PPO"
    iterations: int = 100
    fleet_iterations: int = 0
    num_env_runners: int | None = None
    num_envs_per_env_runner: int = 1
    num_cpus_per_env_runner: int = 1
    num_learners: int = 0
    num_gpus_per_learner: float = 0.0
    checkpoint_every: int = 10
    lr: float = 3e-4
    gamma: float = 0.99
    lambda_: float = 0.95
    entropy_coeff: float = 0.01
    train_batch_size: int = 2000
    minibatch_size: int = 250
    num_epochs: int = 4
    rollout_fragment_length: str = "auto"
    grid_n_robots: int = 4
    grid_horizon_steps: int = 100
    grid_clock: bool = False
    fleet_n_robots: int = 2
    fleet_duration_s: float = 60.0
    warm_start: str | None = None
    max_env_runner_restarts: int = 100
    num_cpus: int | None = None
    include_dashboard: bool = False
    resume: str | None = None


@dataclass(frozen=True)
class AppConfig:
    """The whole validated config of one ``forklift`` invocation.

    Attributes:
        episodes: episodes to run; seed: base seed (episode k uses ``seed + k``).
        duration_s: sim seconds per episode; n_robots: fleet size.
        video: write ``episode_0.gif``; video_every: render every k control ticks;
        video_width: GIF width (px).
    """

    episodes: int = 2
    seed: int = 0
    duration_s: float = 300.0
    n_robots: int = 4
    video: bool = False
    video_every: int = 4
    video_width: int = 320
    sim: SimSection = field(default_factory=SimSection)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    scenario: ScenarioSection = field(default_factory=ScenarioSection)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    agent: AgentSection = field(default_factory=AgentSection)
    localization: LocalizationSection = field(default_factory=LocalizationSection)
    planner: PlannerSection = field(default_factory=PlannerSection)
    perception: PerceptionSection = field(default_factory=PerceptionSection)
    learning: LearningSection = field(default_factory=LearningSection)
    train: TrainSection = field(default_factory=TrainSection)
    ros: RosSection = field(default_factory=RosSection)  # bridge / sim-robot (agent.ros.config)
    record: Literal["none", "bag"] = "none"  # bag: also write a rosbag2 MCAP (agent.recording)


# ---- ranges -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """Allowed interval of a config number: ``lo`` (open if ``lo_open``) to ``hi`` (closed).

    ``None`` bounds are unbounded; a float must also be finite (NaN and +-inf are never a
    valid duration, rate, speed or weight, and NaN passes every comparison).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def describe(self) -> str:
        """What is allowed, e.g. ``> 0``, ``>= 1``, ``in [0, 1]``, ``in (0, 1]``."""
        if self.hi is None:
            return "any number" if self.lo is None else f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        if self.lo is None:
            return f"<= {_fmt(self.hi)}"
        return f"in {'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}]"

    def contains(self, v: float) -> bool:
        """True iff ``v`` is finite and inside the interval."""
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def check(self, path: str, v: float) -> None:
        """Raise the one-line :class:`ConfigError` unless ``v`` is finite and in range."""
        if not self.contains(v):
            finite = "a finite number " if not math.isfinite(v) else ""
            raise ConfigError(path, f"must be {finite}{self.describe()}", v)


POS = Range(0, lo_open=True)
NONNEG = Range(0)
#: longest episode (s): one simulated day; longer runs are several episodes.
MAX_DURATION_S = 86_400
#: first matching pattern wins; every number not matched must be >= 0.
RANGES: tuple[tuple[str, Range], ...] = (
    ("episodes", Range(1)), ("n_robots", Range(1)), ("duration_s", Range(0, MAX_DURATION_S, lo_open=True)),
    ("video_every", Range(1)),
    ("video_width", Range(32)),
    ("sim.world.*", POS), ("sim.robot.*", POS), ("sim.pick_*", POS),
    ("sim.orders.order_deadline_s", POS), ("sim.orders.load_*", POS), ("sim.orders.max_open", Range(1)),
    ("*_prob", Range(0, 1)), ("*.lidar.n_beams", Range(1)), ("*.lidar.range_max", POS), ("*.lidar.fov", POS),
    ("*.camera.width", Range(1)), ("*.camera.height", Range(1)), ("*.camera.every_k", Range(1)),
    ("*.camera.fov_deg", Range(0, 180, lo_open=True)),
    ("agent.nav.follower.yaw_align_exit", NONNEG),
    ("agent.nav.follower.*", POS), ("agent.nav.safety.blind_speed_cap", NONNEG),
    ("agent.nav.safety.warning_length_m", NONNEG), ("agent.nav.safety.*", POS),
    ("agent.nav.planner.step_s", POS), ("agent.nav.planner.horizon_steps", Range(1)),
    ("agent.nav.recovery.max_replans", NONNEG), ("agent.nav.recovery.patience_s", POS),
    ("agent.nav.recovery.progress_*", POS), ("agent.dispatch_period_s", POS),
    ("agent.pick_attempts", Range(1)),
    ("planner.num_simulations", Range(1)), ("planner.max_depth", Range(1)), ("planner.rollout_depth", Range(0)),
    ("planner.plan_horizon", Range(1)), ("planner.max_blockages", Range(0)), ("perception.blockage_subdivision", Range(1)),
    ("planner.discount", Range(0, 1, lo_open=True)), ("train.iterations", Range(1)), ("train.checkpoint_every", Range(1)),
    ("train.lr", POS),
    ("learning.kpi_period_s", POS),
    *((f"learning.learner.{k}", Range(1)) for k in (
        "lora_rank", "fisher_samples", "fisher_batch", "recent_size", "batch_size", "steps_per_update",
        "min_samples", "min_new_samples", "queue_size", "gate_situations", "gate_horizon", "kpi_window")),
    *((f"learning.learner.{k}", POS) for k in (
        "lora_alpha", "lr", "grad_clip", "max_rel_change", "adv_temperature", "adv_weight_max", "kpi_drop")),
    ("learning.learner.replay_fraction", Range(0, 1)), ("learning.learner.rehearsal_fraction", Range(0, 1)), ("learning.learner.discount", Range(0, 1, lo_open=True)),
    ("*", NONNEG),
)


def _range_for(path: str) -> Range:
    for pat, rng in RANGES:
        if fnmatch.fnmatchcase(path, pat):
            return rng
    return NONNEG


# ---- generic builder -----------------------------------------------------------------------

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ConfigError(path, "must be one of " + ", ".join(map(str, choices)), value)
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if origin is tuple:
        return _convert_tuple(tp, value, path)
    return _convert_scalar(tp, value, path)


def _convert_tuple(tp: Any, value: Any, path: str) -> tuple:
    args = typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, "must be a list", value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{path}[{k}]") for k, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(path, f"must be a list of {len(args)} values", value)
    out = tuple(_convert(a, v, f"{path}[{k}]") for k, (a, v) in enumerate(zip(args, value)))
    if len(out) == 2 and all(isinstance(x, (int, float)) for x in out) and out[0] > out[1]:
        raise ConfigError(path, "must be [min, max] with min <= max", value)
    return out


def _convert_scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, "must be true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, "must be an integer", value)
        _range_for(path).check(path, value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, "must be a number", value)
        _range_for(path).check(path, value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, "must be a string", value)
        return value
    raise ConfigError(path, f"unsupported schema type {tp!r}")


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from a plain dict, checking every field.

    Raises:
        ConfigError: unknown key, wrong type, value out of range or not an allowed choice.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path or "config", "must be a mapping (group of keys)", data)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(_join(path, str(unknown[0])), "unknown key; allowed: " + ", ".join(names))
    kwargs = {k: _convert(hints[k], data[k], _join(path, k)) for k in names if k in data}
    try:
        return cls(**kwargs)
    except ConfigError:  # a schema's own check: already one line with its path
        raise
    except (TypeError, ValueError) as e:  # a library __post_init__ check
        raise ConfigError(path or cls.__name__, str(e).splitlines()[0]) from None


# ---- the application config ------------------------------------------------------------------

def build_app_config(data: dict, *, configs_dir: Path | None = None) -> AppConfig:
    """Validate the composed (resolved, plain) config tree and build :class:`AppConfig`.

    Args:
        data: ``OmegaConf.to_container(cfg, resolve=True)`` without the ``hydra`` node.
        configs_dir: resolves a relative ``layout.movingai_map`` that is not found from the
            working directory.

    Raises:
        ConfigError: any invalid field (one-line message).
    """
    data = dict(data)
    layout = data.get("layout")
    if isinstance(layout, dict) and layout.get("movingai_map") and configs_dir is not None:
        p = Path(str(layout["movingai_map"]))
        if not p.is_absolute() and not p.exists() and (configs_dir / p).exists():
            data["layout"] = {**layout, "movingai_map": str(configs_dir / p)}
    agent_data = data.pop("agent", None)
    app = build(AppConfig, data)
    app = dataclasses.replace(app, agent=build_agent_section(agent_data))
    try:
        validate_sim(to_sim_config(app))
    except ValueError as e:  # sim's cross-field checks name SimConfig fields: map to our paths
        msg = str(e).splitlines()[0]
        for lib, ours in (("world.", "sim.world."), ("robot.", "sim.robot."), ("orders.", "sim.orders."),
                          ("faults.", "scenario.faults.")):
            if msg.startswith(lib):
                msg = ours + msg[len(lib):]
                break
        raise ConfigError("", msg) from None
    check_layout(app)
    return app


#: controller kind -> schema of its parameters (the ``agent`` group YAML is flat: kind + fields).
AGENT_SCHEMAS: dict[str, type] = {"baseline": BaselineConfig}


def build_agent_section(data: Any) -> AgentSection:
    """Validate the flat ``agent`` group (``kind`` plus the controller's own fields)."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("agent", "must be a mapping (group of keys)", data)
    kind = _convert(typing.get_type_hints(AgentSection)["kind"], data.get("kind", "baseline"), "agent.kind")
    params = {k: v for k, v in data.items() if k != "kind"}
    if "localization" in params:
        raise ConfigError("agent.localization", "unknown key; choose the pose source with "
                          "localization=ground_truth|ekf|ukf")
    return AgentSection(kind=kind, baseline=build(AGENT_SCHEMAS[kind], params, "agent"))


def check_layout(app: AppConfig) -> None:
    """Generate the layout now (fail fast with the layout's one-line error)."""
    try:
        generate_layout(app.layout).validate(app.n_robots)
    except LayoutError as e:
        raise ConfigError(e.field, str(e).split(": ", 1)[-1]) from None


def to_sim_config(app: AppConfig) -> SimConfig:
    """Map the validated config to ``sim.config.SimConfig``."""
    s = app.sim
    return SimConfig(layout=app.layout, n_robots=app.n_robots, duration_s=app.duration_s, world=s.world,
                     robot=s.robot, sensors=app.sensors, orders=s.orders, faults=app.scenario.faults,
                     pick_tolerance=s.pick_tolerance, pick_max_speed=s.pick_max_speed,
                     scenario=app.scenario.name)


def to_baseline_config(app: AppConfig) -> BaselineConfig:
    """The baseline's config with the chosen pose source."""
    return dataclasses.replace(app.agent.baseline, localization=app.localization.kind)


def to_run_config(app: AppConfig) -> RunConfig:
    """Map the validated config to the runner's :class:`agent.runner.RunConfig`."""
    return RunConfig(sim=to_sim_config(app), episodes=app.episodes, seed=app.seed, video=app.video,
                     video_every=app.video_every, video_width=app.video_width)
