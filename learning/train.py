"""The training driver behind ``forklift train``: curriculum stages, progress, checkpoints.

One run = ``train.iterations`` RLlib iterations of one shared policy, in up to two stages
(:func:`stage_plan`): the first ``iterations - fleet_iterations`` on the grid fleet
(``forklift/GridFleetMA-v0``, fast), the last ``fleet_iterations`` fine-tuning on the
PyBullet fleet (``forklift/Fleet-v0``). The grid stage starts from ``train.warm_start``
(behaviour-cloning weights) or from scratch (seeded); the fleet stage starts from the grid
stage's final network (a new RLlib algorithm: the optimizer state restarts).

Per iteration: one progress line (env steps, steps/s, episode return, completion rate,
env-runner restarts), one JSON line in ``metrics.jsonl`` and TensorBoard scalars in
``tb/`` (when ``tensorboardX`` or ``torch.utils.tensorboard`` imports). Every
``checkpoint_every`` iterations and at the end, ``checkpoints/iter_NNNNNN/`` gets:

* ``algorithm/``: RLlib's checkpoint (pickles; :func:`resolve_resume` restores only a
  directory whose files match the digests this driver recorded);
* ``network.safetensors`` + ``network.json``: the shared policy as a
  :class:`PolicyValueNet` checkpoint (what export, the planner and ``forklift run`` load);
* ``train_state.json``: iteration, stage, env steps, restarts, seed, config, metrics.

``resume=PATH`` (a checkpoint dir or a run dir: its latest checkpoint) continues the
iteration and env-step counts. Everything is determined by (config, seed), bit for bit with
one env runner, given ``PYTHONHASHSEED=0`` and one torch thread in the driver (what
``forklift train`` runs with; Ray workers get the hash seed from
:func:`learning.rllib_adapter.init_ray`): docs/TRAINING.md, "Reproducibility".

All RLlib calls go through :mod:`learning.rllib_adapter`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from learning import rllib_adapter as rl

__all__ = [
    "STATE_FORMAT",
    "IterationRecord",
    "ResumePoint",
    "TrainResult",
    "format_progress",
    "resolve_resume",
    "stage_at",
    "stage_plan",
    "train",
]

STATE_FORMAT = "forklift.train_state"
STATE_VERSION = 1
STAGES = ("grid", "fleet")
RESTART_WAIT_S = 120.0  # how long a run with every env runner down waits for Ray's restart
MAX_EMPTY_ITERATIONS = 5  # consecutive iterations without samples before the run fails


class ResumeError(ValueError):
    """A bad ``resume=`` path (one line)."""


@dataclass(frozen=True)
class IterationRecord:
    """One training iteration, as printed and written to ``metrics.jsonl``.

    Attributes:
        iteration: 1-based iteration of the whole run (continues across resumes).
        stage: ``grid`` or ``fleet``.
        env_steps: env steps sampled so far in the run (a step of the fleet counts once).
        iter_env_steps: env steps sampled in this iteration.
        steps_per_s: ``iter_env_steps`` / wall seconds of this iteration.
        episode_return: mean fleet return of recent episodes (robots' rewards summed);
            None before the first episode ends.
        completion_rate: mean completion rate of recent episodes (0..1) or None.
        env_runner_restarts: crashed env runners restarted so far in the run.
        learner_updates: SGD minibatch updates in this iteration.
        sample_s: seconds the iteration waited for samples (None if not reported).
        learn_s: seconds in the learner update (None if not reported).
        wall_s: wall seconds of this iteration.
    """

    iteration: int
    stage: str
    env_steps: int
    iter_env_steps: int
    steps_per_s: float
    episode_return: float | None
    completion_rate: float | None
    env_runner_restarts: int
    learner_updates: int
    sample_s: float | None
    learn_s: float | None
    wall_s: float


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        out_dir: the run dir.
        records: this invocation's iterations (a resumed run: only the new ones).
        checkpoint: the last checkpoint dir written.
        env_steps: env steps of the whole run (resumed ones included).
        env_runner_restarts: restarts of the whole run.
    """

    out_dir: Path
    records: tuple[IterationRecord, ...]
    checkpoint: Path
    env_steps: int
    env_runner_restarts: int


@dataclass(frozen=True)
class ResumePoint:
    """A validated checkpoint to continue from (see :func:`resolve_resume`)."""

    path: Path  # checkpoints/iter_NNNNNN
    iteration: int
    stage: str
    env_steps: int
    env_runner_restarts: int
    state: dict = field(default_factory=dict)


# ---- stages ------------------------------------------------------------------------------

def stage_plan(sec: Any) -> list[tuple[str, int]]:
    """``[(stage, iterations), ...]`` of a run, stages with zero iterations left out."""
    plan = [("grid", sec.iterations - sec.fleet_iterations), ("fleet", sec.fleet_iterations)]
    return [(s, n) for s, n in plan if n > 0]


def stage_at(sec: Any, iteration: int) -> str:
    """Stage of 1-based ``iteration``."""
    return "grid" if iteration <= sec.iterations - sec.fleet_iterations else "fleet"


# ---- checkpoints -------------------------------------------------------------------------

def _digests(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=1, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)


def resolve_resume(path: str | Path) -> ResumePoint:
    """The checkpoint ``path`` names: a ``checkpoints/iter_N`` dir or a run dir (its latest).

    Only checkpoints this driver wrote are accepted: ``train_state.json`` of the right
    format, and every file of ``algorithm/`` matching the digests recorded there (RLlib
    checkpoints are pickles; a foreign or altered one is refused, not executed).

    Raises:
        ResumeError: one line naming the problem.
    """
    p = Path(path)
    if not p.exists():
        raise ResumeError(f"resume={path}: no such file or directory; allowed a checkpoint dir "
                          "(checkpoints/iter_N) or a run dir of forklift train")
    if not (p / "train_state.json").is_file() and (p / "checkpoints").is_dir():
        found = sorted(q for q in (p / "checkpoints").glob("iter_*") if (q / "train_state.json").is_file())
        if found:
            p = found[-1]
    state_file = p / "train_state.json"
    if not state_file.is_file():
        raise ResumeError(f"resume={path}: no train_state.json; allowed a checkpoint dir "
                          "(checkpoints/iter_N) or a run dir of forklift train")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResumeError(f"resume={path}: unreadable train_state.json ({e})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise ResumeError(f"resume={path}: train_state.json is not a {STATE_FORMAT} v{STATE_VERSION} file")
    algo_dir = p / "algorithm"
    if not algo_dir.is_dir() or _digests(algo_dir) != state.get("algorithm_sha256"):
        raise ResumeError(f"resume={path}: algorithm/ is missing or differs from the digests in "
                          "train_state.json; only this run's own checkpoints are restored")
    return ResumePoint(path=p, iteration=int(state["iteration"]), stage=str(state["stage"]),
                       env_steps=int(state["env_steps"]),
                       env_runner_restarts=int(state["env_runner_restarts"]), state=state)


# ---- logging -----------------------------------------------------------------------------

def _tensorboard(log_dir: Path, log: Callable[[str], None]) -> Any:
    """A SummaryWriter (tensorboardX, else torch's) or None, saying so once."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
        except ImportError:
            log("TensorBoard logging off: neither tensorboardX nor tensorboard is installed "
                "(pip install tensorboardX); metrics.jsonl has every iteration")
            return None
    return SummaryWriter(str(log_dir))


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def format_progress(rec: IterationRecord, total: int) -> str:
    """The one progress line of an iteration."""
    comp = None if rec.completion_rate is None else 100.0 * rec.completion_rate
    return (f"iter {rec.iteration}/{total} [{rec.stage}] env steps {rec.env_steps} "
            f"(+{rec.iter_env_steps}, {rec.steps_per_s:.0f}/s) | return {_fmt(rec.episode_return, '.2f')} "
            f"| completion {_fmt(comp, '.1f')}% | restarts {rec.env_runner_restarts} | {rec.wall_s:.1f} s")


# ---- the run -----------------------------------------------------------------------------

@dataclass
class _Run:
    """Mutable state of one invocation (kept out of the public records)."""

    sec: Any
    out: Path
    seed: int
    config: dict
    log: Callable[[str], None]
    iteration: int = 0
    env_steps: int = 0
    restarts_before: int = 0  # restarts of earlier algorithms (stages, resumed runs)
    records: list[IterationRecord] = field(default_factory=list)
    last_checkpoint: Path | None = None


def _pv_config(warm_start: str | None) -> dict[str, Any]:
    """PolicyValueConfig fields: the warm-start file's (so its weights fit) or the defaults."""
    if warm_start:
        from learning.checkpoint import read_metadata

        return dict(read_metadata(warm_start)["config"])
    return {}


def _save_network(algo: Any, path: Path, pv_config: Mapping[str, Any], training: dict) -> Path:
    from learning.checkpoint import save_policy_value
    from learning.network import PolicyValueNet
    from learning.rl_module import pv_config_from

    net = PolicyValueNet(pv_config_from(dict(pv_config)))
    net.load_state_dict(rl.module_state_dict(algo), strict=True)
    return save_policy_value(net, path, training=_json_safe(training))


def _checkpoint(run: _Run, algo: Any, stage: str, pv_config: Mapping[str, Any]) -> Path:
    ck = run.out / "checkpoints" / f"iter_{run.iteration:06d}"
    ck.mkdir(parents=True, exist_ok=True)
    rl.save_algorithm(algo, ck / "algorithm")
    restarts = run.restarts_before + rl.env_runner_restarts(algo)
    last = asdict(run.records[-1]) if run.records else {}
    info = {"iteration": run.iteration, "stage": stage, "env_steps": run.env_steps,
            "env_runner_restarts": restarts, "seed": run.seed, "metrics": last,
            "train": rl.train_section_dict(run.sec)}
    _save_network(algo, ck / "network.safetensors", pv_config, info)
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, **info, "config": run.config,
             "algorithm_sha256": _digests(ck / "algorithm")}
    _write_json(ck / "train_state.json", state)
    run.last_checkpoint = ck
    return ck


def _record(run: _Run, algo: Any, stage: str, result: Mapping[str, Any], wall_s: float) -> IterationRecord:
    m = rl.iteration_metrics(result)
    steps = int(m["env_steps"] or 0)
    run.env_steps += steps
    updates = round((m["module_steps"] or 0.0) / m["minibatch"]) if m["minibatch"] else 0
    return IterationRecord(
        iteration=run.iteration, stage=stage, env_steps=run.env_steps, iter_env_steps=steps,
        steps_per_s=steps / max(wall_s, 1e-9), episode_return=m["episode_return"],
        completion_rate=m["completion_rate"],
        env_runner_restarts=run.restarts_before + rl.env_runner_restarts(algo),
        learner_updates=updates, sample_s=m["sample_s"], learn_s=m["learn_s"], wall_s=wall_s)


def _run_stage(run: _Run, stage: str, last_iteration: int, *, init_weights: str | None,
               pv_config: Mapping[str, Any], restore: Path | None,
               on_iteration: Callable[[Any, IterationRecord], None] | None, writer: Any) -> Path | None:
    """Iterations ``run.iteration + 1 .. last_iteration`` of one stage; returns the final net."""
    sec = run.sec
    algo = rl.build_algorithm(sec, stage=stage, seed=run.seed, init_weights=init_weights,
                              pv_config=pv_config)
    try:
        if restore is not None:
            rl.restore_algorithm(algo, restore)
        total = sec.iterations
        empty = 0
        while run.iteration < last_iteration:
            t0 = time.perf_counter()
            result = algo.train()
            if not rl.iteration_metrics(result)["env_steps"] and rl.healthy_env_runners(algo) == 0:
                # every env runner crashed: this iteration sampled nothing; wait for Ray's
                # restart and repeat it rather than spend an iteration of the budget on it
                empty += 1
                run.log(f"iteration {run.iteration + 1} sampled nothing: no healthy env runner; "
                        f"waiting up to {RESTART_WAIT_S:.0f} s for a restart")
                if rl.wait_for_env_runners(algo, RESTART_WAIT_S) == 0 or empty > MAX_EMPTY_ITERATIONS:
                    raise RuntimeError(f"train: no env runner came back after {empty} empty iteration(s)")
                continue
            empty = 0
            run.iteration += 1
            rec = _record(run, algo, stage, result, time.perf_counter() - t0)
            run.records.append(rec)
            run.log(format_progress(rec, total))
            with open(run.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(_json_safe(asdict(rec)), allow_nan=False) + "\n")
            if writer is not None:
                for k in ("episode_return", "completion_rate", "steps_per_s", "env_runner_restarts"):
                    v = getattr(rec, k)
                    if v is not None:
                        writer.add_scalar(f"{stage}/{k}" if k != "env_runner_restarts" else k, v, rec.env_steps)
                writer.flush()
            if run.iteration % sec.checkpoint_every == 0 or run.iteration == last_iteration:
                _checkpoint(run, algo, stage, pv_config)
            if on_iteration is not None:
                on_iteration(algo, rec)
        run.restarts_before += rl.env_runner_restarts(algo)
        if run.last_checkpoint is None:
            return None
        return run.last_checkpoint / "network.safetensors"
    finally:
        algo.stop()


def train(sec: Any, *, out_dir: str | Path, seed: int, config: Mapping[str, Any] | None = None,
          on_iteration: Callable[[Any, IterationRecord], None] | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Runs (or, with ``sec.resume``, continues) a training run in ``out_dir``.

    Args:
        sec: a :class:`agent.config.TrainSection`, already validated
            (:func:`learning.rllib_adapter.validate_train_section`); Ray initialised
            (:func:`learning.rllib_adapter.init_ray`).
        out_dir: the run dir (created).
        seed: run seed (module init, env runners, envs).
        config: the whole composed config, saved in every checkpoint's JSON.
        on_iteration: called after every iteration with (RLlib algorithm, record): tests
            and tools use it (e.g. to kill an env runner).
        log: where progress lines go.

    Raises:
        ResumeError: a bad ``resume`` path, or a run that already has its iterations.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(sec=sec, out=out, seed=int(seed), config=dict(config or {}), log=log)
    start: ResumePoint | None = None
    if sec.resume:
        start = resolve_resume(sec.resume)
        if start.iteration >= sec.iterations:
            raise ResumeError(f"resume={sec.resume}: the run already has {start.iteration} iterations; "
                              f"allowed train.iterations > {start.iteration}")
        run.iteration, run.env_steps = start.iteration, start.env_steps
        run.restarts_before = start.env_runner_restarts
        log(f"resuming {start.path} at iteration {start.iteration} ({start.env_steps} env steps, "
            f"stage {start.stage})")
    writer = _tensorboard(out / "tb", log)
    # the network's shape: the resumed checkpoint's, else the warm-start file's, else defaults
    pv_config = _pv_config(str(start.path / "network.safetensors") if start else sec.warm_start)
    grid_last = sec.iterations - sec.fleet_iterations
    init = sec.warm_start
    try:
        for stage, _n in stage_plan(sec):
            last = grid_last if stage == "grid" else sec.iterations
            if run.iteration >= last:
                continue
            restore = None
            if start is not None and start.stage == stage:
                restore, init = start.path / "algorithm", None
            elif start is not None:  # resumed at the end of the grid stage: fleet next
                init = str(start.path / "network.safetensors")
            start = None
            final = _run_stage(run, stage, last, init_weights=init, pv_config=pv_config,
                               restore=restore, on_iteration=on_iteration, writer=writer)
            init = str(final) if final is not None else init
    finally:
        if writer is not None:
            writer.close()
    assert run.last_checkpoint is not None
    return TrainResult(out_dir=out, records=tuple(run.records), checkpoint=run.last_checkpoint,
                       env_steps=run.env_steps, env_runner_restarts=run.restarts_before)

