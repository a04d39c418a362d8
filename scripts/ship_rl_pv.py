"""Ship a ``forklift train`` checkpoint as ``learning/weights/rl_pv.safetensors`` (+ JSON).

Steps (all seeded):

1. greedy evaluation on the grid fleet (``forklift/GridFleetMA-v0``, 4 robots, 100-step
   episodes, seeds ``--seed`` .. ``--seed + --episodes - 1``) of the trained net, the
   warm-start net and a uniformly random legal policy: fleet return, deliveries and
   completion rate per episode (mean and 95% normal interval);
2. the learning curve (return and completion rate vs env steps) from the run's
   ``metrics.jsonl`` as a PNG;
3. the network written with :func:`learning.checkpoint.save_policy_value`; its JSON's
   ``training`` holds the run's config, the last metrics, the grid evaluation and the
   exact command that reproduced it (``--command``).

``--network PATH`` ships a network a later stage derived from the run's checkpoint (the
value fit, ``scripts/fit_rl_value.py --init <run>/checkpoints/iter_N/network.safetensors``)
instead of the checkpoint's own; its ``value_fit`` record (command, data, losses) is kept.
A run trained with ``train.grid_clock=false`` is evaluated with the clock input at 0, as
it trained.

Run:
    python scripts/ship_rl_pv.py --run outputs/RUN --command "forklift train ..." \
        [--network fitted.safetensors] [--out learning/weights/rl_pv.safetensors] \
        [--png docs/assets/rl_learning_curve.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from learning.checkpoint import load_policy_value, save_policy_value
from learning.rl_env import GridFleetMultiAgentEnv
from learning.train import resolve_resume

GRID_PV = Path(__file__).resolve().parents[1] / "learning" / "weights" / "grid_pv.safetensors"  # the BC warm start


def greedy_grid_eval(policy, *, episodes: int, seed: int, n_robots: int = 4, horizon: int = 100,
                     clock: bool = True) -> dict:
    """Mean / 95% half-width of fleet return, deliveries and completion over seeded episodes.

    ``policy(obs: dict of [N, ...] arrays) -> actions [N]``; ``clock=False``: proprio[11] = 0
    (``train.grid_clock=false``).
    """
    env = GridFleetMultiAgentEnv({"n_robots": n_robots, "horizon_steps": horizon, "clock": clock})
    rows = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            batch = {k: np.stack([obs[a][k] for a in env.possible_agents]) for k in obs["robot_0"]}
            act = policy(batch)
            obs, rew, term, trunc, info = env.step({a: int(x) for a, x in zip(env.possible_agents, act)})
            total += sum(rew.values())
            done = term["__all__"] or trunc["__all__"]
        stats = info["robot_0"]["episode_stats"]
        rows.append((total, stats["deliveries"], stats["completion_rate"]))
    arr = np.array(rows, dtype=np.float64)
    mean, half = arr.mean(0), 1.96 * arr.std(0, ddof=1) / np.sqrt(len(arr))
    names = ("return", "deliveries", "completion_rate")
    return {n: {"mean": float(m), "ci95": float(h)} for n, m, h in zip(names, mean, half)} | {"episodes": episodes}


def net_policy(net):
    def act(batch):
        with torch.no_grad():
            out = net({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in batch.items()})
        return out.logits.argmax(-1).numpy()
    return act


def random_policy(seed: int):
    rng = np.random.default_rng(seed)

    def act(batch):
        mask = np.asarray(batch["action_mask"]) > 0.5
        return np.array([rng.choice(np.flatnonzero(m)) for m in mask])
    return act


def metric_rows(metrics: Path, last_iteration: int) -> list[dict]:
    """The run's per-iteration records up to the shipped checkpoint's iteration."""
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    return [r for r in rows if r["iteration"] <= last_iteration]


def plot_curve(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["env_steps"] for r in rows]) / 1e3
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(steps, [r["episode_return"] for r in rows])
    ax[0].set(xlabel="env steps (thousands)", ylabel="fleet episode return", title="return")
    ax[1].plot(steps, [100 * r["completion_rate"] for r in rows])
    ax[1].set(xlabel="env steps (thousands)", ylabel="%", title="completion rate (sampled policy)")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="forklift train run dir or checkpoint dir")
    ap.add_argument("--command", required=True, help="the exact command that produced the run")
    ap.add_argument("--network", type=Path, default=None,
                    help="ship this network (derived from the run, e.g. by scripts/fit_rl_value.py) "
                         "instead of the checkpoint's")
    ap.add_argument("--out", type=Path, default=Path("learning/weights/rl_pv.safetensors"))
    ap.add_argument("--png", type=Path, default=Path("docs/assets/rl_learning_curve.png"))
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--seed", type=int, default=10_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    point = resolve_resume(args.run)
    net, meta = load_policy_value(args.network or point.path / "network.safetensors")
    value_fit = (meta.get("training") or {}).get("value_fit") if args.network else None
    if args.network and value_fit is None:
        raise SystemExit(f"--network {args.network}: no value_fit record in its metadata "
                         "(expected a scripts/fit_rl_value.py output)")
    clock = bool((point.state.get("train") or {}).get("grid_clock", True))
    base, _ = load_policy_value(GRID_PV)
    kw = {"episodes": args.episodes, "seed": args.seed, "clock": clock}
    evals = {
        "rl": greedy_grid_eval(net_policy(net), **kw),
        "warm_start_grid_pv": greedy_grid_eval(net_policy(base), **kw),
        "random": greedy_grid_eval(random_policy(args.seed), **kw),
    }
    for name, e in evals.items():
        print(f"{name:20s} return {e['return']['mean']:6.2f} +- {e['return']['ci95']:.2f}, deliveries "
              f"{e['deliveries']['mean']:5.2f}, completion {100 * e['completion_rate']['mean']:5.1f}%")
    run_dir = point.path.parents[1]
    rows = metric_rows(run_dir / "metrics.jsonl", point.iteration)
    plot_curve(rows, args.png)
    training = {"command": args.command, "iteration": point.iteration, "env_steps": point.env_steps,
                "env_runner_restarts": point.env_runner_restarts, "seed": point.state.get("seed"),
                "train": point.state.get("train"), "last_iteration": point.state.get("metrics"),
                "wall_s": sum(r["wall_s"] for r in rows),
                "grid_greedy_eval": evals | {"env": "forklift/GridFleetMA-v0", "n_robots": 4,
                                             "horizon_steps": 100, "seeds_from": args.seed,
                                             "clock": clock},
                "warm_start": point.state.get("train", {}).get("warm_start")}
    if value_fit is not None:
        training["value_fit"] = value_fit
        training["wall_s"] += value_fit["wall_s"]  # the whole pipeline: PPO + value fit
    save_policy_value(net, args.out, training=training)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}; curve {args.png}")


if __name__ == "__main__":
    main()
