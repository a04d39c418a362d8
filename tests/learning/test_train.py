"""``forklift train`` on real Ray + RLlib: smoke run, resume, restarts, loopback, bad configs.

One loopback Ray (module scope) and one 2-iteration grid run (module scope) are shared by
the tests; everything else is a short extra run. The group stays well under 3 minutes on
2 cores (each RLlib build is ~8 s of it).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.config import TrainSection
from learning import rllib_adapter as rl
from learning.checkpoint import load_policy_value, save_policy_value
from learning.evaluator import DEFAULT_WEIGHTS
from learning.network import PolicyValueConfig, PolicyValueNet
from learning.train import ResumeError, format_progress, resolve_resume, stage_at, stage_plan, train

pytestmark = pytest.mark.timeout(300)

SMALL = TrainSection(iterations=2, checkpoint_every=1, train_batch_size=200, minibatch_size=100,
                     num_epochs=1, grid_horizon_steps=50, num_env_runners=1, num_cpus=2,
                     max_env_runner_restarts=5)


@pytest.fixture(scope="module")
def ray_local():
    """A loopback-only local Ray started by the adapter (as ``forklift train`` does)."""
    import ray

    assert not ray.is_initialized()
    assert rl.init_ray(SMALL) is True
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    """A 2-iteration grid run from scratch: (TrainResult, progress lines)."""
    # one torch thread in the driver's learner, as `forklift train` sets (module fixtures run
    # before the autouse one-thread fixture; other thread counts give other float sums)
    torch.set_num_threads(1)
    lines: list[str] = []
    out = tmp_path_factory.mktemp("train")
    res = train(SMALL, out_dir=out, seed=3, config={"seed": 3}, log=lines.append)
    return res, lines


# ---- the smoke run ---------------------------------------------------------------------

def test_train__two_iterations_write_checkpoints_metrics_and_progress(trained):
    res, lines = trained
    assert [r.iteration for r in res.records] == [1, 2]
    assert all(r.stage == "grid" and r.iter_env_steps > 0 and r.learner_updates > 0 for r in res.records)
    assert res.env_steps == sum(r.iter_env_steps for r in res.records) == res.records[-1].env_steps
    assert res.env_steps >= SMALL.iterations * SMALL.train_batch_size
    progress = [ln for ln in lines if ln.startswith("iter ")]
    assert progress == [format_progress(r, 2) for r in res.records]
    assert "env steps" in progress[0] and "/s" in progress[0] and "completion" in progress[0]
    assert res.records[-1].episode_return is not None  # 50-step episodes end inside an iteration
    assert 0.0 <= res.records[-1].completion_rate <= 1.0
    for it in (1, 2):
        ck = res.out_dir / "checkpoints" / f"iter_{it:06d}"
        assert (ck / "algorithm").is_dir() and (ck / "network.safetensors").is_file()
        state = json.loads((ck / "train_state.json").read_text())
        assert state["iteration"] == it and state["stage"] == "grid" and state["seed"] == 3
        assert state["env_steps"] == res.records[it - 1].env_steps
        assert state["train"]["algorithm"] == "PPO" and state["config"] == {"seed": 3}
    assert res.checkpoint == res.out_dir / "checkpoints" / "iter_000002"
    rows = [json.loads(ln) for ln in (res.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == [r.env_steps for r in res.records]
    assert list((res.out_dir / "tb").glob("events.out.tfevents.*"))  # tensorboardX is installed


def test_train__checkpoint_network_is_the_learner_and_differs_from_init(trained, ray_local):
    res, _ = trained
    net, meta = load_policy_value(res.checkpoint / "network.safetensors", expected=PolicyValueConfig())
    assert meta["training"]["iteration"] == 2
    init = PolicyValueNet(PolicyValueConfig(), generator=torch.Generator().manual_seed(3))
    moved = max(float((net.state_dict()[k] - v).abs().max()) for k, v in init.state_dict().items())
    assert moved > 0  # PPO updated the weights
    # the RLlib checkpoint restores exactly those learner weights
    algo = rl.build_algorithm(SMALL, stage="grid", seed=99, init_weights=None)
    try:
        rl.restore_algorithm(algo, res.checkpoint / "algorithm")
        restored = rl.module_state_dict(algo)
    finally:
        algo.stop()
    for k, v in net.state_dict().items():
        assert torch.equal(restored[k].to(v.dtype), v), k


def test_train__resume_continues_iterations_and_env_steps(trained, tmp_path):
    res, _ = trained
    lines: list[str] = []
    more = dataclasses.replace(SMALL, iterations=3, resume=str(res.out_dir))  # run dir: latest
    res2 = train(more, out_dir=tmp_path, seed=3, log=lines.append)
    assert [r.iteration for r in res2.records] == [3]
    assert res2.env_steps == res.env_steps + res2.records[0].iter_env_steps
    assert res2.records[0].env_steps == res2.env_steps
    assert any(ln.startswith("resuming") and "iteration 2" in ln for ln in lines)
    state = json.loads((res2.checkpoint / "train_state.json").read_text())
    assert state["iteration"] == 3 and state["env_steps"] == res2.env_steps


def test_train__resume_refuses_altered_or_foreign_checkpoints(trained, tmp_path):
    res, _ = trained
    assert resolve_resume(res.checkpoint).iteration == 2
    assert resolve_resume(res.out_dir).path == res.checkpoint
    copy = tmp_path / "ck"
    shutil.copytree(res.checkpoint, copy)
    victim = next(p for p in sorted((copy / "algorithm").rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(ResumeError, match="only this run's own checkpoints"):
        resolve_resume(copy)
    with pytest.raises(ResumeError, match="no train_state.json"):
        resolve_resume(tmp_path)
    with pytest.raises(ResumeError, match="already has 2 iterations"):
        train(dataclasses.replace(SMALL, resume=str(res.checkpoint)), out_dir=tmp_path / "x", seed=0,
              log=lambda _: None)


def test_train__exported_onnx_of_a_train_checkpoint_matches_torch(trained, tmp_path):
    from learning.export import export_onnx

    res, _ = trained
    rep = export_onnx(res.checkpoint, tmp_path / "p.onnx", batch=32)
    assert rep.weights.endswith("iter_000002/network.safetensors")
    assert rep.max_abs_diff_logits <= 1e-4 and rep.max_abs_diff_value <= 1e-4


_TIMINGS = ("steps_per_s", "sample_s", "learn_s", "wall_s")


def _metrics(run_dir) -> list[dict]:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in _TIMINGS} for r in rows]


def test_train__same_seed_gives_the_same_run_other_seed_differs(trained, ray_local, tmp_path):
    # Without PYTHONHASHSEED in the workers' runtime env every env runner ordered the robots
    # of its forward batches by its own string hash (RLlib iterates sets of agent ids), so
    # the same seed sampled other actions (docs/TRAINING.md, "Reproducibility").
    res, _ = trained
    assert ray_local.get(ray_local.remote(lambda: os.environ.get("PYTHONHASHSEED")).remote()) == rl.HASH_SEED
    again = train(SMALL, out_dir=tmp_path / "again", seed=3, config={"seed": 3}, log=lambda _: None)
    assert _metrics(again.out_dir) == _metrics(res.out_dir)
    for it in (1, 2):
        name = f"checkpoints/iter_{it:06d}/network.safetensors"
        assert (again.out_dir / name).read_bytes() == (res.out_dir / name).read_bytes(), name
    other = train(dataclasses.replace(SMALL, iterations=1), out_dir=tmp_path / "other", seed=4,
                  log=lambda _: None)
    a, _ = load_policy_value(res.out_dir / "checkpoints/iter_000001/network.safetensors")
    b, _ = load_policy_value(other.checkpoint / "network.safetensors")
    assert any(not torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_train_cli__console_entry_reexecs_with_a_fixed_hash_seed(monkeypatch):
    import sys

    from agent import train_cmd

    class Exec(Exception):
        pass

    def fake_execve(path, argv, env):
        raise Exec(path, argv, env)

    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    monkeypatch.setattr(sys, "argv", ["forklift", "train", "train.iterations=1", "seed=2"])
    with pytest.raises(Exec) as e:
        main()
    path, argv, env = e.value.args
    assert path == sys.executable and argv == [sys.executable, "-m", "agent.cli", "train",
                                               "train.iterations=1", "seed=2"]
    assert env["PYTHONHASHSEED"] == train_cmd.HASH_SEED == rl.HASH_SEED
    # explicit argv (in-process callers, tests) never re-executes; bad input still exits 2
    with pytest.raises(SystemExit) as bad:
        main(["train", "train.algorithm=DQN"])
    assert bad.value.code == 2
    monkeypatch.setenv("PYTHONHASHSEED", train_cmd.HASH_SEED)
    assert train_cmd.reexec_with_fixed_hash_seed(["train"]) is None


def test_train_cli__one_iteration_end_to_end(ray_local, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "train.iterations=1", "train.train_batch_size=100", "train.minibatch_size=100",
                 "train.num_epochs=1", "train.grid_horizon_steps=50", "train.num_env_runners=1",
                 f"hydra.run.dir={out}", "seed=5"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "iter 1/1 [grid]" in printed and "done:" in printed
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["iterations"] == 1 and summary["env_steps"] >= 100
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "iter_000001" / "network.safetensors").is_file()
    assert ray_local.is_initialized()  # a Ray it did not start is left running


@pytest.mark.slow
def test_train__grid_then_pybullet_fleet_stage(ray_local, tmp_path):
    sec = dataclasses.replace(SMALL, iterations=2, fleet_iterations=1, train_batch_size=120,
                              minibatch_size=60, fleet_duration_s=20.0)
    res = train(sec, out_dir=tmp_path, seed=0, log=lambda _: None)
    assert [r.stage for r in res.records] == ["grid", "fleet"]
    assert all(r.iter_env_steps > 0 for r in res.records)
    state = json.loads((res.checkpoint / "train_state.json").read_text())
    assert state["stage"] == "fleet" and state["iteration"] == 2


# ---- fault tolerance and Ray's sockets -------------------------------------------------

def test_train__killed_env_runner_is_restarted_and_counted(ray_local, tmp_path):
    killed: list[int] = []

    def kill_after_first(algo, rec):
        if rec.iteration == 1:
            pids = rl.env_runner_pids(algo)
            assert len(pids) == 1 and pids[0] != os.getpid()
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    sec = dataclasses.replace(SMALL, iterations=3, checkpoint_every=10)
    res = train(sec, out_dir=tmp_path, seed=0, on_iteration=kill_after_first, log=lambda _: None)
    assert killed
    assert [r.iteration for r in res.records] == [1, 2, 3]  # training went on
    assert res.records[-1].iter_env_steps > 0
    assert res.env_runner_restarts >= 1 and res.records[-1].env_runner_restarts >= 1
    state = json.loads((res.checkpoint / "train_state.json").read_text())
    assert state["env_runner_restarts"] == res.env_runner_restarts


def test_train__local_ray_listens_only_on_loopback(ray_local):
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    names = {p.name() for p in procs}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), names
    listening = []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(p.name(), c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 3, listening  # GCS, raylet, object manager at least
    exposed = [entry for entry in listening if not _loopback(entry[1])]
    assert not exposed, exposed


def _loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 or an IPv4-mapped loopback (::ffff:127.0.0.1); not 0.0.0.0 / ::."""
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


# ---- the pieces the run is made of ---------------------------------------------------------

def test_train__stage_plan_splits_grid_then_fleet():
    sec = dataclasses.replace(SMALL, iterations=10, fleet_iterations=3)
    assert stage_plan(sec) == [("grid", 7), ("fleet", 3)]
    assert [stage_at(sec, i) for i in (1, 7, 8, 10)] == ["grid", "grid", "fleet", "fleet"]
    assert stage_plan(dataclasses.replace(sec, fleet_iterations=10)) == [("fleet", 10)]
    assert stage_plan(dataclasses.replace(sec, fleet_iterations=0)) == [("grid", 10)]


def _grid_obs(batch: int, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    mask = (rng.random((batch, 7)) < 0.6).astype(np.int8)
    mask[:, 4] = 1  # wait is always legal
    return {"proprio": torch.from_numpy(rng.uniform(-1, 1, (batch, 12)).astype(np.float32)),
            "occupancy": torch.from_numpy((rng.random((batch, 11, 11)) < 0.3).astype(np.float32)),
            "action_mask": torch.from_numpy(mask)}


def test_rl_module__forward_equals_the_network():
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from learning.rl_env import GridFleetMultiAgentEnv
    from learning.rl_module import PolicyValueRLModule

    env = GridFleetMultiAgentEnv({"n_robots": 2})
    spec = RLModuleSpec(module_class=PolicyValueRLModule, observation_space=env.observation_spaces["robot_0"],
                        action_space=env.action_spaces["robot_0"],
                        model_config={"init_weights": str(DEFAULT_WEIGHTS)})
    module = spec.build().eval()
    net, _ = load_policy_value(DEFAULT_WEIGHTS)
    obs = _grid_obs(16, seed=1)
    with torch.no_grad():
        ref = net({k: v.float() for k, v in obs.items()})
        out = module.forward_inference({Columns.OBS: obs})
        train_out = module.forward_train({Columns.OBS: obs})
        values = module.compute_values({Columns.OBS: obs})
        values_emb = module.compute_values({Columns.OBS: obs}, embeddings=train_out[Columns.EMBEDDINGS])
    assert torch.equal(out[Columns.ACTION_DIST_INPUTS], ref.logits)
    assert torch.equal(train_out[Columns.ACTION_DIST_INPUTS], ref.logits)
    assert torch.equal(values, ref.value) and torch.equal(values_emb, ref.value)
    assert bool((ref.logits[obs["action_mask"] == 0] <= -1e8).all())


def test_checkpoint__safetensors_round_trip_is_exact(tmp_path):
    net = PolicyValueNet(PolicyValueConfig(), generator=torch.Generator().manual_seed(7))
    path = save_policy_value(net, tmp_path / "n.safetensors", training={"steps": 5})
    back, meta = load_policy_value(path, expected=PolicyValueConfig())
    assert meta["training"] == {"steps": 5}
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    obs = {k: v.float() for k, v in _grid_obs(8, seed=2).items()}
    with torch.no_grad():
        a, b = net.eval()(obs), back(obs)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.value, b.value)


# ---- bad configs: one line, exit 2, nothing written (checked before Ray starts) ----------

BAD_TRAIN = [
    (["train=cluster", "train.num_env_runners=0"], "train.num_env_runners=0: must be >= 1"),
    (["train.algorithm=DQN"], "train.algorithm=DQN: allowed PPO, APPO, IMPALA"),
    (["resume=/nonexistent/run"], "resume=/nonexistent/run: no such file or directory"),
    (["train.resume=/nonexistent/run"], "train.resume=/nonexistent/run: no such file or directory"),
    (["train.lr=nan"], "train.lr=nan: must be a finite number"),
    (["train.warm_start=/nonexistent.safetensors"], "train.warm_start=/nonexistent.safetensors: not a file"),
    (["train.minibatch_size=5000"], "train.minibatch_size=5000: must be <= train_batch_size=2000"),
    (["train.fleet_iterations=500"], "train.fleet_iterations=500: must be in [0, iterations=100]"),
]


def _run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("overrides,expected", BAD_TRAIN, ids=[o[-1] for o, _ in BAD_TRAIN])
def test_train_cli__bad_config_is_one_line_exit_2(overrides, expected, capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = _run_cli(["train", f"hydra.run.dir={out_dir}", *overrides], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("forklift: error: "), err
    assert expected in err, err
    assert "Traceback" not in err and out == "" and not out_dir.exists()


def test_train_cli__resume_of_a_foreign_dir_is_one_line_exit_2(capsys, tmp_path):
    (tmp_path / "algorithm").mkdir()
    code, out, err = _run_cli(["train", f"hydra.run.dir={tmp_path / 'run'}", f"resume={tmp_path}"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no train_state.json" in err, err
