"""Planning evaluation: curves, efficiency, plot, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from planning import MCTSConfig, UniformEvaluator
from planning.evaluation import (
    DistanceEvaluator,
    PlanningEvalResult,
    plot_planning_eval,
    run_planning_eval,
    standard_evaluators,
)

SMALL = {"sims": (1, 4, 16), "n_situations": 6, "horizon_steps": 30, "seed": 0}


@pytest.fixture(scope="module")
def small_result(layout) -> PlanningEvalResult:
    return run_planning_eval(layout, standard_evaluators(("uniform", "distance")), **SMALL)


def test_planning_eval__curves_have_one_point_per_budget(small_result: PlanningEvalResult) -> None:
    r = small_result
    assert r.sims == (1, 4, 16) and set(r.mean_return) == {"uniform", "distance"}
    for name in r.mean_return:
        assert r.mean_return[name].shape == (3,) and r.per_kind[name].shape == (3, 3)
        assert np.isfinite(r.mean_return[name]).all() and (r.decision_ms[name] > 0).all()
    assert r.best_return >= r.worst_return
    assert r.best_return == max(v.max() for v in r.mean_return.values())
    for eff in r.efficiency.values():
        assert eff is None or eff in r.sims


def test_planning_eval__informed_values_plan_better(small_result: PlanningEvalResult) -> None:
    r = small_result
    assert r.mean_return["distance"].max() > r.mean_return["uniform"].max()
    assert r.efficiency["distance"] is not None


def test_planning_eval__same_seed_same_curves(layout, small_result: PlanningEvalResult) -> None:
    again = run_planning_eval(layout, standard_evaluators(("uniform", "distance")), **SMALL)
    for name in again.mean_return:
        np.testing.assert_array_equal(again.mean_return[name], small_result.mean_return[name])


def test_planning_eval__plot_and_json(tmp_path, small_result: PlanningEvalResult) -> None:
    path = plot_planning_eval(small_result, str(tmp_path / "curve.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    json.dumps(small_result.to_dict())


def test_planning_eval__accepts_instances_and_gumbel(layout) -> None:
    r = run_planning_eval(
        layout,
        {"flat": UniformEvaluator(7)},
        sims=(2,),
        n_situations=2,
        horizon_steps=5,
        mcts_config=MCTSConfig(rule="gumbel"),
    )
    assert r.meta["rule"] == "gumbel" and r.mean_return["flat"].shape == (1,)


def test_distance_evaluator__value_grows_toward_the_goal(layout) -> None:
    from planning import sample_situations

    model, st = sample_situations(layout, ["open"], np.random.default_rng(0))
    ev = DistanceEvaluator(model)
    _, far = ev.evaluate_states(st, np.random.default_rng(0))
    near = model.replace(st, pos=st.pick)
    _, close = ev.evaluate_states(near, np.random.default_rng(0))
    assert close[0] > far[0]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"evaluators": {}}, "evaluators: empty"),
        ({"sims": (0, 2)}, "sims:"),
        ({"n_situations": 0}, "n_situations: 0"),
    ],
)
def test_planning_eval__bad_input_refused(layout, kw: dict, msg: str) -> None:
    args = {"evaluators": {"u": UniformEvaluator(7)}, "sims": (1,), "n_situations": 1}
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        run_planning_eval(layout, **args)


def test_standard_evaluators__unknown_name_refused() -> None:
    with pytest.raises(ValueError, match="evaluator: 'oracle'"):
        standard_evaluators(("oracle",))
