"""Every YAML under configs/ composes, validates, and maps to the typed constructors."""

from __future__ import annotations

import dataclasses

import pytest

from agent.baseline import BaselineConfig
from agent.cli import CONFIGS_DIR, compose_config
from agent.config import (
    AppConfig,
    SimSection,
    build_app_config,
    to_baseline_config,
    to_run_config,
    to_sim_config,
)
from agent.runner import RunConfig
from sim.config import FaultsConfig, SensorsConfig, SimConfig
from sim.layout import LayoutConfig, generate_layout

PRIMARY = "config"
GROUPS = sorted(p.name for p in CONFIGS_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
OPTIONS = [(g, y.stem) for g in GROUPS for y in sorted((CONFIGS_DIR / g).glob("*.yaml"))]
OPTIONAL_GROUPS = {"experiment"}  # not in the defaults list: selected with +group=option


def compose(*overrides: str) -> tuple[dict, AppConfig]:
    plain, _ = compose_config(list(overrides), config_name=PRIMARY)
    return plain, build_app_config(plain, configs_dir=CONFIGS_DIR)


def test_configs__every_yaml_is_covered():
    yamls = {p.relative_to(CONFIGS_DIR).as_posix() for p in CONFIGS_DIR.rglob("*.yaml")}
    covered = {f"{g}/{o}.yaml" for g, o in OPTIONS} | {f"{PRIMARY}.yaml", "eval.yaml", "train.yaml", "export.yaml", "bridge.yaml"}
    assert yamls == covered


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_configs__option_composes_and_maps_to_typed_configs(group, option):
    prefix = "+" if group in OPTIONAL_GROUPS else ""
    _, app = compose(f"{prefix}{group}={option}")
    assert isinstance(app, AppConfig)
    sim = to_sim_config(app)
    assert isinstance(sim, SimConfig) and sim.n_robots == app.n_robots and sim.duration_s == app.duration_s
    assert sim.scenario == app.scenario.name and sim.faults == app.scenario.faults
    run = to_run_config(app)
    assert isinstance(run, RunConfig) and run.episodes == app.episodes and run.sim == sim
    base = to_baseline_config(app)
    assert isinstance(base, BaselineConfig) and base.localization == app.localization.kind
    generate_layout(sim.layout).validate(sim.n_robots)
    for field in dataclasses.fields(AppConfig):  # every section is typed, never a dict
        assert dataclasses.is_dataclass(getattr(app, field.name)) or not isinstance(getattr(app, field.name), dict)


def test_configs__defaults_match_the_library_defaults():
    _, app = compose()
    assert (app.episodes, app.seed, app.duration_s, app.n_robots, app.video) == (2, 0, 300.0, 4, False)
    assert app.sim == SimSection()
    assert app.sensors == SensorsConfig()
    assert app.layout == LayoutConfig()
    assert app.scenario.name == "nominal" and app.scenario.faults == FaultsConfig()
    assert app.agent.kind == "baseline" and app.agent.baseline == BaselineConfig()
    assert app.localization.kind == "ekf"  # agents drive on the estimate, not on ground truth
    assert to_sim_config(app) == SimConfig()


def test_configs__exceptions_scenario_is_the_library_preset():
    _, app = compose("scenario=exceptions")
    assert app.scenario.faults == FaultsConfig.exceptions()
    assert to_sim_config(app).scenario == "exceptions"


def test_configs__smoke_experiment_is_tiny():
    _, app = compose("+experiment=smoke")
    assert (app.episodes, app.duration_s, app.n_robots) == (1, 20.0, 2)


def test_configs__movingai_layout_resolves_relative_to_configs():
    _, app = compose("layout=movingai")
    assert app.layout.movingai_map is not None and app.layout.movingai_map.startswith(str(CONFIGS_DIR))
    assert generate_layout(app.layout).name == "warehouse-small"


def test_configs__app_config_is_frozen():
    _, app = compose()
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.episodes = 5  # type: ignore[misc]


def test_configs__eval_primary_composes_with_its_own_section():
    from agent.cli import VERBS, prepare

    inv = prepare(VERBS["eval"], ["task=planning", "situations=3"])
    assert inv.section.task == "planning" and inv.section.situations == 3
    assert inv.app.episodes == 1 and inv.app.duration_s == 120.0
    assert inv.choices["sensors"] == "nominal"


def test_configs__learner_section_mirrors_online_config():
    """``learning.learner`` is ``learning.online.OnlineConfig`` field by field (same names,
    types and defaults), so every key reaches the learner and no default drifts."""
    import typing

    from agent.config import LearnerSection
    from learning.online import OnlineConfig

    ours, theirs = typing.get_type_hints(LearnerSection), typing.get_type_hints(OnlineConfig)
    assert list(ours) == list(theirs) and ours == theirs
    assert dataclasses.asdict(LearnerSection()) == dataclasses.asdict(OnlineConfig())
    _, app = compose("learning=online", "learning.learner.lora_rank=4", "learning.learner.mode=full")
    assert app.learning.online is True and app.learning.learner.lora_rank == 4
    assert OnlineConfig(**dataclasses.asdict(app.learning.learner)).mode == "full"


def test_configs__learning_default_yaml_is_the_schema_default():
    from agent.config import LearningSection

    _, app = compose()
    assert app.learning == LearningSection()


def test_configs__shift_scenario_has_a_site_change():
    _, app = compose("scenario=shift")
    assert app.scenario.name == "shift" and not app.scenario.faults.enabled
    shift = app.scenario.shift
    assert shift is not None and len(shift.closed_cells) > 0 and shift.faults.enabled
    free = generate_layout(app.layout).free
    assert all(free[r, c] for r, c in shift.closed_cells)  # the closed cells are aisle cells today
