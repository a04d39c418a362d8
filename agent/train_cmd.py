"""``forklift train``: RLlib training of the shared fleet policy (local Ray or a cluster).

    forklift train                                    # train=local: loopback Ray, cores - 1 runners
    forklift train train.iterations=50 train.warm_start=learning/weights/grid_pv.safetensors
    forklift train train=cluster train.address=auto train.num_env_runners=32
    forklift train resume=outputs/2026-12-07/09-00-00  # continue a run (its latest checkpoint)

Outputs in the run dir (``hydra.run.dir``): ``config.yaml``, ``metrics.jsonl``, ``tb/``
(TensorBoard), ``checkpoints/iter_N/`` (RLlib checkpoint, ``network.safetensors`` + JSON,
``train_state.json``), ``train_summary.json``. See docs/TRAINING.md and
:mod:`learning.train`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.config import ConfigError
from agent.verbs import Invocation, register_verb

__all__ = ["HASH_SEED", "TrainVerbSection", "reexec_with_fixed_hash_seed", "train_section", "train_verb"]

HASH_SEED = "0"  # = learning.rllib_adapter.HASH_SEED (not imported here: that module loads Ray)


def reexec_with_fixed_hash_seed(args: Sequence[str]) -> None:
    """Replaces this process by ``python -m agent.cli ARGS`` with ``PYTHONHASHSEED=0``,
    unless it already runs with it (then returns).

    ``forklift train``'s driver hosts the learner (``num_learners=0``), and RLlib orders
    the rows of the learner's batch by iterating sets of agent ids: with Python's random
    string hash every run shuffles its minibatches differently. The hash seed is fixed
    when the interpreter starts, so the console entry (:func:`agent.cli.main` without
    ``argv``) re-executes itself once; Ray workers get it from the runtime env
    (:func:`learning.rllib_adapter.init_ray`). See docs/TRAINING.md, "Reproducibility".
    """
    if os.environ.get("PYTHONHASHSEED") == HASH_SEED:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "agent.cli", *args],
              {**os.environ, "PYTHONHASHSEED": HASH_SEED})


@dataclass(frozen=True)
class TrainVerbSection:
    """The ``train`` verb's own top-level keys.

    Attributes:
        resume: a checkpoint dir (``checkpoints/iter_N``) or run dir of ``forklift train``
            to continue (same as ``train.resume``); null = a new run.
    """

    resume: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line) for a path that does not exist."""
        if self.resume is not None and not Path(self.resume).exists():
            raise ConfigError("resume", "no such file or directory; allowed a checkpoint dir "
                              "(checkpoints/iter_N) or a run dir of forklift train, or null", self.resume)


def train_section(inv: Invocation):
    """The validated :class:`agent.config.TrainSection` with ``resume=`` merged in.

    Raises:
        ConfigError: one line naming the field and what is allowed.
    """
    from learning.rllib_adapter import TrainConfigError, validate_train_section

    sec = inv.app.train
    own = inv.section.resume if inv.section is not None else None
    if own is not None:
        if sec.resume is not None and sec.resume != own:
            raise ConfigError("resume", f"differs from train.resume={sec.resume}; set one of them", own)
        sec = dataclasses.replace(sec, resume=own)
    if sec.resume is not None and not Path(sec.resume).exists():
        raise ConfigError("train.resume", "no such file or directory; allowed a checkpoint dir or run dir",
                          sec.resume)
    try:
        validate_train_section(sec)
    except TrainConfigError as e:
        raise ConfigError("", str(e)) from None
    return sec


@register_verb("train", "train the fleet policy with RLlib (local Ray or a cluster); checkpoints",
               config_name="train", section=TrainVerbSection)
def train_verb(inv: Invocation) -> int:
    """``forklift train``: curriculum stages, a progress line per iteration, checkpoints."""
    sec = train_section(inv)  # everything checked before Ray starts or a file is written
    import json

    import yaml

    from learning.train import ResumeError, resolve_resume

    if sec.resume is not None:
        try:
            point = resolve_resume(sec.resume)
        except ResumeError as e:
            raise ConfigError("", str(e)) from None
        if point.iteration >= sec.iterations:
            raise ConfigError("train.iterations", f"must be > {point.iteration}, the resumed run's "
                              "iterations", sec.iterations)
    import torch

    torch.set_num_threads(1)  # the driver hosts the learner (num_learners=0): see worker_setup
    from learning.rllib_adapter import init_ray, resolve_env_runners
    from learning.train import train

    out = inv.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(inv.config, sort_keys=False))
    print(f"forklift train: {sec.algorithm}, {sec.iterations} iterations "
          f"({sec.iterations - sec.fleet_iterations} grid, {sec.fleet_iterations} fleet), "
          f"{resolve_env_runners(sec)} env runner(s), mode={sec.mode}, seed={inv.app.seed}, "
          f"warm start {sec.warm_start or 'none (scratch)'}; run dir {out}", flush=True)
    started = init_ray(sec)
    try:
        result = train(sec, out_dir=out, seed=inv.app.seed, config=inv.config,
                       log=lambda line: print(line, flush=True))
    finally:
        if started:
            import ray

            ray.shutdown()
    last = result.records[-1] if result.records else None
    summary = {"checkpoint": str(result.checkpoint), "env_steps": result.env_steps,
               "env_runner_restarts": result.env_runner_restarts,
               "iterations": last.iteration if last else None,
               "last": dataclasses.asdict(last) if last else None}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"done: {result.env_steps} env steps, {result.env_runner_restarts} env-runner restart(s); "
          f"checkpoint {result.checkpoint}", flush=True)
    return 0
