"""The planner registry: ``planner=<name>`` -> a fleet controller factory.

One place maps a validated config to the controller that drives the fleet, for
``forklift run``, ``forklift eval`` and the ROS bridge alike:

- ``mcts_rl`` (default): :class:`agent.agent.Agent` with batched MCTS and the network;
- ``mcts_rollout``: the same agent, MCTS with random-rollout values;
- ``policy``: the same agent, network greedy (no search);
- ``classic``: :class:`agent.baseline.BaselineController` (the ``agent`` group's config).

Unknown names are a :class:`agent.config.ConfigError` (one line, exit 2 at the CLI).
A missing network checkpoint is refused here, before any episode runs.

With ``learning.online=true``, :func:`online_controller_factory` gives agents that share
one online learner (:class:`agent.online_hook.OnlineHook`) across the run's episodes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AppConfig, ConfigError, to_baseline_config

__all__ = ["ONLINE_PLANNERS", "PLANNER_NAMES", "agent_config", "controller_factory", "online_controller_factory"]

PLANNER_NAMES: tuple[str, ...] = ("mcts_rl", "mcts_rollout", "policy", "classic")
#: planners with a network the online learner can fine-tune
ONLINE_PLANNERS: tuple[str, ...] = ("mcts_rl", "policy")


def agent_config(app: AppConfig, planner: str) -> Any:
    """The :class:`agent.agent.AgentConfig` of a learned planner from the app config."""
    from agent.agent import AgentConfig

    p, base = app.planner, app.agent.baseline
    return AgentConfig(planner=planner, rule=p.algorithm, num_simulations=p.num_simulations,
                       max_depth=p.max_depth, discount=p.discount, gumbel_scale=p.gumbel_scale,
                       c_puct=p.c_puct, c_scale=p.c_scale, rollout_depth=p.rollout_depth, checkpoint=app.learning.checkpoint,
                       plan_horizon=p.plan_horizon, max_blockages=p.max_blockages, wait_s=p.wait_s,
                       dispatch_period_s=base.dispatch_period_s, urgency_m_per_s=base.urgency_m_per_s,
                       handling_retries=base.pick_attempts, localization=app.localization.kind,
                       nav=base.nav, seed=app.seed, blockage_dwell_s=app.perception.blockage_dwell_s,
                       blockage_subdivision=app.perception.blockage_subdivision)


def controller_factory(app: AppConfig, planner: str | None = None, *, runtime: str | None = None
                       ) -> Callable[[], Any]:
    """A factory of fresh controllers (one per episode) for ``planner`` (default
    ``app.planner.name``); the network runs on ``runtime`` (default ``app.planner.runtime``)."""
    name = app.planner.name if planner is None else planner
    if name not in PLANNER_NAMES:
        raise ConfigError("planner", f"unknown planner; allowed {', '.join(PLANNER_NAMES)}", name)
    if name == "classic":
        from agent.baseline import BaselineController

        return functools.partial(BaselineController, to_baseline_config(app))
    cfg = agent_config(app, name)
    evaluator = None
    if name in ("mcts_rl", "policy"):
        if cfg.checkpoint is not None and not Path(cfg.checkpoint).is_file():
            raise ConfigError("learning.checkpoint", "no such file; allowed a .safetensors weights file",
                              cfg.checkpoint)
        if (runtime or app.planner.runtime) == "onnx":
            from learning.onnx_evaluator import load_onnx_evaluator as load
        else:
            from learning.evaluator import load_network_evaluator as load

        try:
            evaluator = load(cfg.checkpoint)
        except (ValueError, OSError) as e:
            raise ConfigError("learning.checkpoint", str(e).splitlines()[0], cfg.checkpoint) from None
    from agent.agent import Agent

    return functools.partial(Agent, cfg, evaluator=evaluator)


def online_controller_factory(app: AppConfig, planner: str | None = None, *, layout: Any = None
                              ) -> tuple[Callable[[], Any], Any]:
    """``learning.online=true``: (factory of agents sharing one online learner, the hook).

    The hook (:func:`agent.online_hook.build_online_hook`) outlives the agents: call its
    ``close()`` after the run, read ``summary()`` for the report.

    Raises:
        ConfigError: the planner has no network to fine-tune (one line).
    """
    name = app.planner.name if planner is None else planner
    if name not in ONLINE_PLANNERS:
        raise ConfigError("learning.online", f"needs a network planner ({', '.join(ONLINE_PLANNERS)}); "
                          f"planner={name}", True)
    factory = controller_factory(app, name, runtime="torch")  # the learner swaps torch weights
    from agent.online_hook import build_online_hook

    hook = build_online_hook(app, factory.keywords["evaluator"], layout)  # type: ignore[attr-defined]
    return functools.partial(factory, online=hook), hook
