"""forklift eval task=planning: simulations for 95% of the best return per evaluator, and the
network-vs-rollout ratio (the planning-efficiency claim: >= 40% fewer, aim 4x)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.cli import main
from agent.eval_cmd import planning_efficiency
from planning.evaluation import PlanningEvalResult

SIMS = (1, 2, 4, 8, 16)


def _result(curves: dict[str, list[float]]) -> PlanningEvalResult:
    mean = {k: np.asarray(v, float) for k, v in curves.items()}
    zeros = {k: np.zeros(len(SIMS)) for k in curves}
    return PlanningEvalResult(
        sims=SIMS, kinds=("open",), mean_return=mean, stderr=zeros, per_kind=dict(zeros),
        decision_ms=dict(zeros), best_return=max(float(v.max()) for v in mean.values()),
        worst_return=min(float(v.min()) for v in mean.values()), efficiency={}, n_situations=2,
        horizon_steps=10, seed=0)


def test_planning_efficiency__ratio_fewer_and_verdicts_when_both_reach():
    # best 1.0, worst -1.0: span threshold 0.9, of-best threshold 0.95
    eff = planning_efficiency(_result({"network": [0.0, 0.92, 0.96, 1.0, 1.0],
                                       "rollout": [-1.0, -0.5, 0.0, 0.91, 0.97]}))
    assert eff["span"]["threshold_return"] == pytest.approx(0.9)
    assert eff["span"]["sims"] == {"network": 2, "rollout": 8}
    cmp = eff["span"]["network_vs_rollout"]
    assert cmp["exact"] and cmp["ratio"] == pytest.approx(4.0) and cmp["fewer"] == pytest.approx(0.75)
    assert cmp["claim_40pct_fewer"] == "met" and cmp["aim_4x"] == "met"
    assert eff["of_best"]["sims"] == {"network": 4, "rollout": 16}
    assert eff["of_best"]["network_vs_rollout"]["ratio"] == pytest.approx(4.0)


def test_planning_efficiency__claim_missed_when_the_network_needs_as_many():
    eff = planning_efficiency(_result({"network": [-1.0, 0.0, 0.5, 0.95, 1.0],
                                       "rollout": [-1.0, 0.0, 0.5, 0.95, 1.0]}))
    cmp = eff["span"]["network_vs_rollout"]
    assert cmp["ratio"] == pytest.approx(1.0) and cmp["fewer"] == pytest.approx(0.0)
    assert cmp["claim_40pct_fewer"] == "missed" and cmp["aim_4x"] == "missed"
    # a network that never gets there is worse than rollouts that do
    eff = planning_efficiency(_result({"network": [-1.0] * 5, "rollout": [-1.0, 0.0, 0.5, 0.95, 1.0]}))
    assert eff["span"]["sims"]["network"] is None
    assert eff["span"]["network_vs_rollout"]["claim_40pct_fewer"] == "missed"


def test_planning_efficiency__rollouts_not_within_the_budget_give_a_lower_bound():
    eff = planning_efficiency(_result({"network": [0.9, 1.0, 1.0, 1.0, 1.0],
                                       "rollout": [-2.0, -1.0, -0.5, 0.0, 0.2]}))
    assert eff["max_sims"] == 16 and eff["span"]["sims"] == {"network": 1, "rollout": None}
    cmp = eff["span"]["network_vs_rollout"]
    assert not cmp["exact"] and cmp["ratio"] == pytest.approx(16.0)
    assert cmp["fewer"] == pytest.approx(1 - 1 / 16) and cmp["claim_40pct_fewer"] == "met"
    # all returns <= 0: "95% of the best" has no meaning; only the span reading is given
    eff = planning_efficiency(_result({"network": [-0.5] * 5, "rollout": [-1.0] * 5}))
    assert eff["of_best"]["threshold_return"] is None
    assert eff["of_best"]["network_vs_rollout"]["claim_40pct_fewer"] == "undetermined"


def test_eval_planning__report_has_sims_for_95_and_the_ratio(tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(["eval", "task=planning", 'evaluator="network,rollout"', "sims=[1,2]", "situations=2",
                 f"hydra.run.dir={out}"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    eff = rep["efficiency"]
    assert eff["max_sims"] == 2 and eff["best_return"] == rep["result"]["best_return"]
    assert set(eff["span"]["sims"]) == {"network", "rollout"}
    assert eff["span"]["sims"]["network"] == rep["result"]["efficiency"]["network"]
    cmp = eff["span"]["network_vs_rollout"]
    assert set(cmp) == {"ratio", "fewer", "exact", "claim_40pct_fewer", "aim_4x"}
    assert "sims for 95%" in printed and "planning efficiency (span)" in printed
