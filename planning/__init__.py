"""Planning: batched MCTS over a PlanningModel, the warehouse grid model, path search.

Public surface (everything else is implementation):

- search: :class:`MCTS`, :class:`MCTSConfig`, :class:`SearchResult`, :class:`SearchTree`
  (PUCT / Gumbel; tree search, or graph search with ``transpositions=True``; settings and
  result in ``planning.mcts_config``, numba kernels in ``planning.search_jit`` (tree) and
  ``planning.graph_jit`` (graph))
- protocols: :class:`PlanningModel`, :class:`Evaluator`, :class:`StateEvaluator`
- evaluators: :class:`UniformEvaluator`, :class:`RolloutEvaluator`,
  :class:`FunctionEvaluator`, :class:`TorchEvaluator`
- warehouse: :class:`GridModel`, :class:`GridModelConfig`, :class:`GridState`,
  :func:`sample_situations`, envs ``forklift/GridWarehouse-v0`` / ``forklift/GridFleet-v0``
  (registered on import)
- paths: :func:`astar`, :class:`Reservations`, :func:`space_time_astar`,
  :func:`prioritized_plan`, :func:`bfs_distances`
- evaluation: :func:`run_planning_eval`, :func:`plot_planning_eval`,
  :class:`PlanningEvalResult`, :func:`standard_evaluators`, :class:`DistanceEvaluator`
- adapters: :class:`planning.adapters.TabularModel` (gymnasium toy-text envs; state keys and
  transition tables for graph search), :func:`planning.adapters.value_iteration`
"""

from planning import adapters
from planning.evaluation import (
    DistanceEvaluator,
    PlanningEvalResult,
    plot_planning_eval,
    run_planning_eval,
    standard_evaluators,
)
from planning.evaluators import (
    FunctionEvaluator,
    RolloutEvaluator,
    TorchEvaluator,
    UniformEvaluator,
)
from planning.grid_env import GridWarehouseEnv, register_envs
from planning.grid_fleet_env import GridFleetEnv
from planning.grid_model import GridModel, GridModelConfig, GridState
from planning.mcts import MCTS, MCTSConfig, SearchResult
from planning.paths import Reservations, astar, bfs_distances, prioritized_plan, space_time_astar
from planning.protocols import Evaluator, PlanningModel, StateEvaluator
from planning.situations import sample_situations
from planning.tree import SearchTree

register_envs()

__all__ = [
    "MCTS",
    "DistanceEvaluator",
    "Evaluator",
    "FunctionEvaluator",
    "GridFleetEnv",
    "GridModel",
    "GridModelConfig",
    "GridState",
    "GridWarehouseEnv",
    "MCTSConfig",
    "PlanningEvalResult",
    "PlanningModel",
    "Reservations",
    "RolloutEvaluator",
    "SearchResult",
    "SearchTree",
    "StateEvaluator",
    "TorchEvaluator",
    "UniformEvaluator",
    "adapters",
    "astar",
    "bfs_distances",
    "plot_planning_eval",
    "prioritized_plan",
    "register_envs",
    "run_planning_eval",
    "sample_situations",
    "space_time_astar",
    "standard_evaluators",
]
