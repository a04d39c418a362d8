"""All RLlib API use in one place: Ray start-up and ``AlgorithmConfig`` from our typed config.

RLlib's API changes between minor releases; this module is the only one that names its
config methods (checked against the installed ray 2.60: ``AlgorithmConfig.api_stack``,
``.environment``, ``.env_runners``, ``.learners``, ``.training``, ``.multi_agent``,
``.rl_module``, ``.fault_tolerance``, ``.callbacks``, ``.debugging``; ``RLModuleSpec`` /
``MultiRLModuleSpec``; ``Algorithm.save_to_path`` / ``restore_from_path``;
``EnvRunnerGroup.num_remote_worker_restarts``; ``LearnerGroup.get_weights``).

Every key of :class:`agent.config.TrainSection` drives something here or in
:mod:`learning.train` (stages, checkpoints, resume).

Ray:

* ``mode=local``: ``ray.init`` with the machine's cores (``num_cpus`` overrides), bound to
  127.0.0.1 (``_node_ip_address``; the dashboard off unless ``include_dashboard``), and
  ``num_env_runners`` = cores - 1 but at least one remote runner (RLlib restarts only
  remote runners after a crash).
* ``mode=cluster``: ``ray.init(address=...)`` (``auto`` or ``host:port``); runners,
  learners and GPUs as configured.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from learning.rl_env import GRID_ENV, PYBULLET_ENV, register_rllib_envs
from learning.rl_module import PolicyValueRLModule

__all__ = [
    "ALGORITHMS",
    "HASH_SEED",
    "MODULE_ID",
    "TrainConfigError",
    "build_algorithm",
    "build_algorithm_config",
    "cartpole_reference_config",
    "env_runner_pids",
    "env_runner_restarts",
    "init_ray",
    "iteration_metrics",
    "module_state_dict",
    "resolve_env_runners",
    "restore_algorithm",
    "save_algorithm",
    "validate_train_section",
    "wait_for_env_runners",
    "worker_setup",
]

ALGORITHMS = ("PPO", "APPO", "IMPALA")
MODULE_ID = "shared"  # one policy shared by every robot of the fleet
HASH_SEED = "0"  # PYTHONHASHSEED of every Ray worker (and of `forklift train`'s driver)


class TrainConfigError(ValueError):
    """A bad training config: ``field``, value and what is allowed (one line)."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        super().__init__(f"train.{field}={value}: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


def validate_train_section(sec: Any) -> None:
    """Cross-field checks of a :class:`TrainSection` (raises :class:`TrainConfigError`)."""
    if sec.algorithm not in ALGORITHMS:
        raise TrainConfigError("algorithm", sec.algorithm, f"allowed {', '.join(ALGORITHMS)}")
    for name in ("lr", "gamma", "lambda_", "entropy_coeff", "num_gpus_per_learner", "fleet_duration_s"):
        v = float(getattr(sec, name))
        if not math.isfinite(v):
            raise TrainConfigError(name, v, "must be a finite number")
    if not sec.lr > 0:
        raise TrainConfigError("lr", sec.lr, "must be > 0")
    if not 0 < sec.gamma <= 1:
        raise TrainConfigError("gamma", sec.gamma, "must be in (0, 1]")
    if not 0 <= sec.lambda_ <= 1:
        raise TrainConfigError("lambda_", sec.lambda_, "must be in [0, 1]")
    if sec.num_env_runners is not None and sec.num_env_runners < 1:
        raise TrainConfigError("num_env_runners", sec.num_env_runners,
                               "must be >= 1 (RLlib restarts only remote env runners)")
    if sec.mode == "cluster" and not sec.address:
        raise TrainConfigError("address", sec.address, "cluster mode needs 'auto' or host:port")
    for name in ("iterations", "checkpoint_every", "train_batch_size", "minibatch_size",
                 "num_epochs", "grid_n_robots", "grid_horizon_steps", "fleet_n_robots",
                 "num_envs_per_env_runner", "num_cpus_per_env_runner"):
        if getattr(sec, name) < 1:
            raise TrainConfigError(name, getattr(sec, name), "must be >= 1")
    if not 0 <= sec.fleet_iterations <= sec.iterations:
        raise TrainConfigError("fleet_iterations", sec.fleet_iterations,
                               f"must be in [0, iterations={sec.iterations}]")
    if sec.minibatch_size > sec.train_batch_size:
        raise TrainConfigError("minibatch_size", sec.minibatch_size,
                               f"must be <= train_batch_size={sec.train_batch_size}")
    rfl = sec.rollout_fragment_length
    if rfl != "auto" and not (str(rfl).isdigit() and int(rfl) >= 1):
        raise TrainConfigError("rollout_fragment_length", rfl, "allowed 'auto' or an integer >= 1")
    if sec.warm_start is not None and not os.path.isfile(sec.warm_start):
        raise TrainConfigError("warm_start", sec.warm_start, "not a file; allowed a .safetensors path or null")
    if sec.num_cpus is not None and sec.num_cpus < 1:
        raise TrainConfigError("num_cpus", sec.num_cpus, "must be >= 1 or null")


def local_cpus(sec: Any) -> int:
    """CPUs the local Ray gets: ``num_cpus`` or the machine's cores."""
    return int(sec.num_cpus or os.cpu_count() or 1)


def resolve_env_runners(sec: Any) -> int:
    """Remote env runners: the configured number, else (local) cores - 1, at least 1."""
    if sec.num_env_runners is not None:
        return int(sec.num_env_runners)
    return max(1, local_cpus(sec) - 1)


def worker_setup() -> None:
    """Every Ray worker process (env runners, learners): torch on the CPUs Ray gave it.

    Ray exports ``OMP_NUM_THREADS`` = the actor's ``num_cpus`` (1 for an env runner by
    default) but torch reads it only if it is set before torch's first import; an env
    runner on a loaded 2-core machine with torch's default of one thread per core spends
    most of a forward pass spinning (measured ~190 ms instead of ~1 ms per forward).
    """
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))


def init_ray(sec: Any) -> bool:
    """Starts (local) or joins (cluster) Ray; True if this call started it.

    A Ray already initialised in this process is reused (and False returned), so a
    caller shuts down only the Ray it started.
    """
    import ray

    if ray.is_initialized():
        register_rllib_envs()
        return False
    env = {
        "env_vars": {"PYTHONPATH": os.pathsep.join(
            [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]).strip(os.pathsep),
            # RLlib iterates sets of agent ids (MultiAgentEpisode.agent_ids) to order the
            # rows of every forward batch: with a random string hash the sampled actions
            # land on different robots in every worker process (docs/TRAINING.md)
            "PYTHONHASHSEED": HASH_SEED},
        "worker_process_setup_hook": "learning.rllib_adapter.worker_setup",
    }
    if sec.mode == "local":
        # Ray replaces 127.0.0.1 by the machine's routable address unless "clusters" are
        # off (its own switch for laptops, read from ray_constants at call time); off, the
        # GCS, raylet, object store and workers all listen on loopback only.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        ray.init(
            num_cpus=local_cpus(sec),
            include_dashboard=bool(sec.include_dashboard),
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            runtime_env=env,
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        ray.init(address=sec.address, runtime_env=env, log_to_driver=False)
    register_rllib_envs()
    return True


_WINDOW = 100  # episodes in the per-iteration means (RLlib's metrics_num_episodes_for_smoothing)


def _episode_callback_cls() -> type:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class _EpisodeStats(RLlibCallback):
        """Logs ``completion_rate`` and ``deliveries`` of each finished episode."""

        def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
            if metrics_logger is None:
                return
            infos = episode.get_infos(-1)
            for info in infos.values() if isinstance(infos, Mapping) else ():
                if not isinstance(info, Mapping):
                    continue
                stats = info.get("episode_stats") or info.get("kpis")
                if stats:
                    # a plain mean over the last episodes (RLlib's default is an EMA that
                    # starts at 0 and would report 1% of the first episode's rate)
                    log = functools.partial(metrics_logger.log_value, reduce="mean", window=_WINDOW)
                    log("completion_rate", float(stats.get("completion_rate", 0.0)))
                    if "deliveries" in stats:
                        log("deliveries", float(stats["deliveries"]))
                    elif "orders_delivered" in stats:
                        log("deliveries", float(stats["orders_delivered"]))
                    return

    return _EpisodeStats


def env_spec(sec: Any, stage: str) -> tuple[str, dict[str, Any]]:
    """(RLlib env name, env_config) of a curriculum stage (``grid`` or ``fleet``)."""
    if stage == "grid":
        return GRID_ENV, {"n_robots": sec.grid_n_robots, "horizon_steps": sec.grid_horizon_steps,
                          "clock": bool(sec.grid_clock)}
    if stage == "fleet":
        return PYBULLET_ENV, {"n_robots": sec.fleet_n_robots, "duration_s": sec.fleet_duration_s,
                              "action_mode": "macro"}
    raise ValueError(f"stage: {stage!r}; allowed grid, fleet")


def build_algorithm_config(sec: Any, *, stage: str, seed: int, init_weights: str | None,
                           pv_config: Mapping[str, Any] | None = None) -> Any:
    """The RLlib ``AlgorithmConfig`` of one curriculum stage.

    Args:
        sec: a validated :class:`agent.config.TrainSection`.
        stage: ``grid`` (forklift/GridFleetMA-v0) or ``fleet`` (forklift/Fleet-v0).
        seed: run seed (RLlib seeds env runners from it).
        init_weights: ``.safetensors`` loaded into the module at setup (warm start), or None.
        pv_config: :class:`PolicyValueConfig` fields (default: the defaults).
    """
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    cls = {"PPO": PPOConfig, "APPO": APPOConfig, "IMPALA": IMPALAConfig}[sec.algorithm]
    env_id, env_config = env_spec(sec, stage)
    rfl = sec.rollout_fragment_length
    cfg = (
        cls()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(env=env_id, env_config=env_config)
        .env_runners(
            num_env_runners=resolve_env_runners(sec),
            num_envs_per_env_runner=sec.num_envs_per_env_runner,
            num_cpus_per_env_runner=sec.num_cpus_per_env_runner,
            rollout_fragment_length=rfl if rfl == "auto" else int(rfl),
            sample_timeout_s=600.0,
        )
        .learners(num_learners=sec.num_learners, num_gpus_per_learner=sec.num_gpus_per_learner)
        .multi_agent(policies={MODULE_ID}, policy_mapping_fn=_map_to_shared)
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={
                MODULE_ID: RLModuleSpec(
                    module_class=PolicyValueRLModule,
                    model_config={"pv_config": dict(pv_config or {}), "init_weights": init_weights,
                                  "seed": int(seed)},
                )
            })
        )
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=sec.max_env_runner_restarts,
            delay_between_env_runner_restarts_s=1.0,
            num_consecutive_env_runner_failures_tolerance=max(1, sec.max_env_runner_restarts),
        )
        .callbacks(_episode_callback_cls())
        .debugging(seed=int(seed), log_level="ERROR")
        .reporting(min_sample_timesteps_per_iteration=0, min_time_s_per_iteration=0)
    )
    train_kwargs: dict[str, Any] = {
        "lr": sec.lr,
        "gamma": sec.gamma,
        "train_batch_size_per_learner": max(1, sec.train_batch_size // max(1, sec.num_learners)),
        "entropy_coeff": sec.entropy_coeff,
    }
    if sec.algorithm == "PPO":
        train_kwargs.update(lambda_=sec.lambda_, minibatch_size=sec.minibatch_size,
                            num_epochs=sec.num_epochs)
    cfg = cfg.training(**train_kwargs)
    return cfg


def _map_to_shared(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    return MODULE_ID


def build_algorithm(sec: Any, **kwargs: Any) -> Any:
    """``build_algorithm_config(sec, **kwargs).build_algo()``."""
    return build_algorithm_config(sec, **kwargs).build_algo()


def env_runner_restarts(algo: Any) -> int:
    """How many times RLlib restarted a crashed remote env runner in this process."""
    group = getattr(algo, "env_runner_group", None)
    return int(group.num_remote_worker_restarts()) if group is not None else 0


def module_state_dict(algo: Any) -> dict[str, Any]:
    """The shared module's learner weights as ``{PolicyValueNet key: torch tensor}``."""
    import torch

    w = algo.learner_group.get_weights([MODULE_ID])[MODULE_ID]
    return {k.removeprefix("net."): torch.as_tensor(np.asarray(v)) for k, v in w.items()
            if k.startswith("net.")}


def train_section_dict(sec: Any) -> dict[str, Any]:
    """The section as a JSON-able dict."""
    return asdict(sec)


def env_runner_pids(algo: Any) -> list[int]:
    """Process ids of the healthy remote env runners (the local one excluded)."""
    return [int(p) for p in algo.env_runner_group.foreach_env_runner(
        lambda _runner: os.getpid(), local_env_runner=False)]


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def iteration_metrics(result: Mapping[str, Any]) -> dict[str, float | None]:
    """Our names for the numbers of one ``Algorithm.train()`` result (None = not reported).

    Keys: ``env_steps`` (sampled this iteration, all robots of a step count once),
    ``agent_steps``, ``episodes``, ``episode_return`` (mean fleet return, the robots'
    rewards summed), ``completion_rate`` (mean over the last episodes), ``deliveries``,
    ``sample_s`` / ``learn_s`` (time sampling / in the learner update), ``module_steps``
    (agent samples trained on, all epochs), ``minibatch`` (mean samples per SGD update),
    ``iteration_s``.
    """
    er = result.get("env_runners", {}) or {}
    learners = result.get("learners", {}) or {}
    # the shared module's stats; a single-agent algorithm (the CartPole reference) has one
    ln = learners.get(MODULE_ID) or next(
        (v for k, v in learners.items() if k != "__all_modules__" and isinstance(v, Mapping)), {})
    tm = result.get("timers", {}) or {}
    agent_steps = er.get("num_agent_steps_sampled")
    if isinstance(agent_steps, Mapping):
        agent_steps = sum(float(v) for v in agent_steps.values())
    return {
        "env_steps": _num(er.get("num_env_steps_sampled")),
        "agent_steps": _num(agent_steps),
        "episodes": _num(er.get("num_episodes")),
        "episode_return": _num(er.get("episode_return_mean")),
        "completion_rate": _num(er.get("completion_rate")),
        "deliveries": _num(er.get("deliveries")),
        "sample_s": _num(tm.get("env_runner_sampling_timer")),
        "learn_s": _num(tm.get("learner_update_timer")),
        "module_steps": _num(ln.get("num_module_steps_trained")),
        "minibatch": _num(ln.get("module_train_batch_size_mean")),
        "iteration_s": _num(result.get("time_this_iter_s")),
    }


def save_algorithm(algo: Any, path: str | os.PathLike[str]) -> None:
    """RLlib's own checkpoint of the whole algorithm (pickles: restore only your own).

    The path is made absolute: RLlib 2.60 parses it as a pyarrow URI, and a relative one
    (``hydra.run.dir=outputs/run``) fails with "URI has empty scheme" at the first checkpoint."""
    algo.save_to_path(str(Path(path).resolve()))


def restore_algorithm(algo: Any, path: str | os.PathLike[str]) -> None:
    """Loads :func:`save_algorithm`'s directory into ``algo`` (learner, optimizer, runners)."""
    algo.restore_from_path(str(Path(path).resolve()))


def healthy_env_runners(algo: Any) -> int:
    """Remote env runners RLlib currently counts as healthy."""
    return int(algo.env_runner_group.num_healthy_remote_workers())


def wait_for_env_runners(algo: Any, timeout_s: float, *, poll_s: float = 0.5) -> int:
    """Until a remote env runner is healthy again (Ray restarts crashed actors; RLlib's
    ``restore_env_runners`` probes them and syncs the weights), at most ``timeout_s``.

    Returns:
        The healthy remote env runners at the end (0 = none came back in time).
    """
    import time

    deadline = time.monotonic() + timeout_s
    while healthy_env_runners(algo) == 0 and time.monotonic() < deadline:
        algo.restore_env_runners(algo.env_runner_group)
        if healthy_env_runners(algo) == 0:
            time.sleep(poll_s)
    return healthy_env_runners(algo)


def cartpole_reference_config(sec: Any, *, seed: int = 0) -> Any:
    """RLlib's stock PPO on ``CartPole-v1`` with ``sec``'s runner and batch settings.

    The reference point of ``benchmarks/bench_training.py``: the same sampling machinery
    with RLlib's default MLP and a trivial env, so env-runner scaling can be told apart
    from our env's and network's cost.
    """
    from ray.rllib.algorithms.ppo import PPOConfig

    return (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(env="CartPole-v1")
        .env_runners(num_env_runners=resolve_env_runners(sec),
                     num_envs_per_env_runner=sec.num_envs_per_env_runner,
                     num_cpus_per_env_runner=sec.num_cpus_per_env_runner)
        .learners(num_learners=sec.num_learners, num_gpus_per_learner=sec.num_gpus_per_learner)
        .training(train_batch_size_per_learner=sec.train_batch_size, minibatch_size=sec.minibatch_size,
                  num_epochs=sec.num_epochs, lr=sec.lr)
        .debugging(seed=int(seed), log_level="ERROR")
        .reporting(min_sample_timesteps_per_iteration=0, min_time_s_per_iteration=0)
    )
