"""Learning: the policy/value network the planner uses, its checkpoints and pre-training.

- :class:`PolicyValueNet` (fusion encoder -> macro-action logits + value) and its config;
- :class:`NetworkEvaluator`: the planner's ``evaluator=network`` (planning ``Evaluator``);
- safetensors + JSON checkpoints (:func:`save_policy_value`, :func:`load_policy_value`);
- grid-model pre-training on shortest-path expert targets (:func:`pretrain`).

Example:
    >>> from learning import load_network_evaluator
    >>> from planning import MCTS, MCTSConfig
    >>> mcts = MCTS(model, load_network_evaluator(), MCTSConfig(num_simulations=8))
"""

from learning.checkpoint import load_policy_value, read_metadata, save_policy_value
from learning.evaluator import DEFAULT_WEIGHTS, NetworkEvaluator, load_network_evaluator
from learning.expert import ShortestPathExpert, expert_returns, open_world_values
from learning.grid_data import GridDataConfig, GroupDataset, PVDataset, make_datasets
from learning.network import PolicyValueConfig, PolicyValueNet, PolicyValueOutput
from learning.pretrain import (
    PretrainConfig,
    TrainLog,
    action_agreement,
    group_loss,
    pretrain,
    pv_loss,
    train_policy_value,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "GridDataConfig",
    "GroupDataset",
    "NetworkEvaluator",
    "PVDataset",
    "PolicyValueConfig",
    "PolicyValueNet",
    "PolicyValueOutput",
    "PretrainConfig",
    "ShortestPathExpert",
    "TrainLog",
    "action_agreement",
    "expert_returns",
    "group_loss",
    "load_network_evaluator",
    "load_policy_value",
    "make_datasets",
    "open_world_values",
    "pretrain",
    "pv_loss",
    "read_metadata",
    "save_policy_value",
    "train_policy_value",
]
