"""Planning: batched MCTS over a PlanningModel, the warehouse grid model, path search."""

from planning.evaluators import FunctionEvaluator, RolloutEvaluator, TorchEvaluator, UniformEvaluator
from planning.mcts import MCTS, MCTSConfig, SearchResult
from planning.paths import Reservations, astar, bfs_distances, prioritized_plan, space_time_astar
from planning.protocols import Evaluator, PlanningModel, StateEvaluator
from planning.tree import SearchTree

__all__ = [
    "MCTS", "Evaluator", "FunctionEvaluator", "MCTSConfig", "PlanningModel", "Reservations",
    "RolloutEvaluator", "SearchResult", "SearchTree", "StateEvaluator", "TorchEvaluator",
    "UniformEvaluator", "astar", "bfs_distances", "prioritized_plan", "space_time_astar",
]
