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

Run:
    python scripts/ship_rl_pv.py --run outputs/RUN --command "forklift train ..." \
        [--out learning/weights/rl_pv.safetensors] [--png docs/assets/rl_learning_curve.png]
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


def greedy_grid_eval(policy, *, episodes: int, seed: int, n_robots: int = 4, horizon: int = 100) -> dict:
    """Mean / 95% half-width of fleet return, deliveries and completion over seeded episodes.

    ``policy(obs: dict of [N, ...] arrays) -> actions [N]``.
    """
    env = GridFleetMultiAgentEnv({"n_robots": n_robots, "horizon_steps": horizon})
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


def plot_curve(metrics: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
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
    ap.add_argument("--out", type=Path, default=Path("learning/weights/rl_pv.safetensors"))
    ap.add_argument("--png", type=Path, default=Path("docs/assets/rl_learning_curve.png"))
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--seed", type=int, default=10_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    point = resolve_resume(args.run)
    net, _ = load_policy_value(point.path / "network.safetensors")
    base, _ = load_policy_value(GRID_PV)
    evals = {
        "rl": greedy_grid_eval(net_policy(net), episodes=args.episodes, seed=args.seed),
        "warm_start_grid_pv": greedy_grid_eval(net_policy(base), episodes=args.episodes, seed=args.seed),
        "random": greedy_grid_eval(random_policy(args.seed), episodes=args.episodes, seed=args.seed),
    }
    for name, e in evals.items():
        print(f"{name:20s} return {e['return']['mean']:6.2f} +- {e['return']['ci95']:.2f}, deliveries "
              f"{e['deliveries']['mean']:5.2f}, completion {100 * e['completion_rate']['mean']:5.1f}%")
    run_dir = point.path.parents[1]
    plot_curve(run_dir / "metrics.jsonl", args.png)
    training = {"command": args.command, "iteration": point.iteration, "env_steps": point.env_steps,
                "env_runner_restarts": point.env_runner_restarts, "seed": point.state.get("seed"),
                "train": point.state.get("train"), "last_iteration": point.state.get("metrics"),
                "wall_s": sum(json.loads(ln)["wall_s"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()),
                "grid_greedy_eval": evals | {"env": "forklift/GridFleetMA-v0", "n_robots": 4,
                                             "horizon_steps": 100, "seeds_from": args.seed},
                "warm_start": point.state.get("train", {}).get("warm_start")}
    save_policy_value(net, args.out, training=training)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}; curve {args.png}")


if __name__ == "__main__":
    main()
