"""Cross-modal fusion encoder: shapes, masking semantics, gradients, dropout, export, learning."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch
from torch import nn

from perception.fusion import FusionConfig, FusionEncoder, modality_presence
from perception.fusion_encoders import LidarEncoder

B = 3


def make_inputs(cfg: FusionConfig, bsz: int = B, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full random sensor frame for ``cfg``."""
    gen = torch.Generator().manual_seed(seed)
    height, width = cfg.camera_size
    size = cfg.occupancy_size
    return {
        "proprio": torch.randn(bsz, cfg.proprio_dim, generator=gen),
        "camera_rgb": torch.randint(
            0, 256, (bsz, height, width, 3), generator=gen, dtype=torch.uint8
        ),
        "camera_depth": 0.5 + 5 * torch.rand(bsz, height, width, generator=gen),
        "lidar": 0.2 + 15 * torch.rand(bsz, cfg.lidar_beams, generator=gen),
        "occupancy": torch.rand(bsz, size, size, generator=gen),
    }


def small_cfg(**overrides) -> FusionConfig:
    base = FusionConfig(
        d_model=32,
        n_heads=4,
        n_layers=2,
        camera_size=(32, 32),
        camera_patch=8,
        lidar_beams=32,
        lidar_tokens=8,
        occupancy_size=16,
        occupancy_patch=4,
    )
    return dataclasses.replace(base, **overrides)


def build(cfg: FusionConfig, seed: int = 0) -> FusionEncoder:
    torch.manual_seed(seed)
    return FusionEncoder(cfg).eval()


def without(inputs: dict, *keys: str) -> dict:
    return {k: v for k, v in inputs.items() if k not in keys}


SUBSETS = {
    "full": (),
    "dead_camera": ("camera_rgb", "camera_depth"),
    "planner_state": ("camera_rgb", "camera_depth", "lidar"),
    "proprio_only": ("camera_rgb", "camera_depth", "lidar", "occupancy"),
}


@pytest.mark.parametrize("subset", SUBSETS)
def test_fusion_encoder__fused_shape_for_every_modality_subset(subset):
    cfg = FusionConfig()
    out = build(cfg)(without(make_inputs(cfg), *SUBSETS[subset]))
    assert out.shape == (B, cfg.d_model)
    assert torch.isfinite(out).all()


def test_fusion_encoder__top_k_and_no_self_attention_variants_run():
    for cfg in (small_cfg(top_k=3), small_cfg(self_attention=False), small_cfg(sensors=())):
        enc = build(cfg)
        out = enc(make_inputs(cfg) if cfg.sensors else {"proprio": torch.randn(B, 8)})
        assert out.shape == (B, cfg.d_model) and torch.isfinite(out).all()


def test_fusion_encoder__top_k_changes_output():
    dense, sparse = build(small_cfg()), build(small_cfg(top_k=2))
    inputs = make_inputs(small_cfg())
    assert not torch.allclose(dense(inputs), sparse(inputs), atol=1e-4)


def test_fusion_encoder__masked_modality_content_does_not_change_output():
    cfg = small_cfg()
    enc = build(cfg)
    inputs = make_inputs(cfg)
    present = {
        "camera": torch.tensor([False, True, True]),
        "lidar": torch.zeros(B, dtype=torch.bool),
    }
    out = enc(inputs, present)
    changed = dict(inputs)
    changed["camera_rgb"] = inputs["camera_rgb"].clone()
    changed["camera_rgb"][0] = 255 - changed["camera_rgb"][0]
    changed["camera_depth"] = torch.full_like(inputs["camera_depth"], float("nan"))
    changed["camera_depth"][1:] = inputs["camera_depth"][1:]
    changed["lidar"] = torch.full_like(inputs["lidar"], 1e6)
    torch.testing.assert_close(enc(changed, present), out, atol=0, rtol=0)
    # The same change where the modality is present must change the output.
    assert not torch.allclose(enc(changed)[0], enc(inputs)[0], atol=1e-4)


def test_fusion_encoder__absent_key_equals_all_false_presence():
    cfg = small_cfg()
    enc = build(cfg)
    inputs = make_inputs(cfg)
    masked = enc(inputs, {"lidar": torch.zeros(B, dtype=torch.bool)})
    torch.testing.assert_close(enc(without(inputs, "lidar")), masked, atol=1e-6, rtol=1e-6)


def test_fusion_encoder__missing_modality_is_masked_not_zero_filled():
    cfg = small_cfg()
    enc = build(cfg)
    inputs = make_inputs(cfg)
    zero_filled = dict(inputs, lidar=torch.zeros_like(inputs["lidar"]))
    assert not torch.allclose(enc(without(inputs, "lidar")), enc(zero_filled), atol=1e-4)


def _grad_norms(enc: FusionEncoder, loss: torch.Tensor) -> dict[str, float | None]:
    enc.zero_grad(set_to_none=True)
    loss.backward()
    norms = {}
    for name in (*enc.cfg.sensors, "proprio"):
        module = enc.proprio if name == "proprio" else enc.encoders[name]
        params = [*module.parameters(), enc.pos_embed[name], enc.modality_embed[name]]
        grads = [p.grad for p in params]
        norms[name] = (
            None
            if all(g is None for g in grads)
            else sum(float(g.abs().sum()) for g in grads if g is not None)
        )
    return norms


def test_fusion_encoder__gradients_reach_present_encoders_only():
    cfg = small_cfg()
    enc = build(cfg).train()
    inputs = without(make_inputs(cfg), "camera_rgb", "camera_depth")  # camera absent from dict
    present = {"lidar": torch.zeros(B, dtype=torch.bool)}  # lidar masked for every sample
    norms = _grad_norms(enc, enc(inputs, present).pow(2).sum())
    assert norms["camera"] is None
    assert norms["lidar"] == 0.0
    assert norms["occupancy"] > 0 and norms["proprio"] > 0
    # Sanity: with lidar present its encoder does get gradient.
    assert _grad_norms(enc, enc(inputs).pow(2).sum())["lidar"] > 0


def test_lidar_encoder__handles_inf_and_nan_beams():
    cfg = small_cfg()
    enc = LidarEncoder(cfg)
    ranges = 3.0 + torch.rand(2, cfg.lidar_beams)
    ranges[0, :4] = float("nan")  # sector 0 of sample 0: all beams invalid
    ranges[0, 4:8] = float("inf")  # sector 1: no return, still valid
    ranges[1, ::2] = float("nan")
    tokens, valid = enc(ranges)
    assert torch.isfinite(tokens).all()
    assert valid.tolist()[0] == [False] + [True] * 7 and valid[1].all()
    fused = build(cfg)(dict(make_inputs(cfg, bsz=2), lidar=ranges))
    assert torch.isfinite(fused).all()


def test_fusion_encoder__all_nan_lidar_equals_absent_lidar():
    cfg = small_cfg()
    enc = build(cfg)
    inputs = make_inputs(cfg)
    nan_scan = dict(inputs, lidar=torch.full_like(inputs["lidar"], float("nan")))
    torch.testing.assert_close(enc(nan_scan), enc(without(inputs, "lidar")), atol=1e-6, rtol=1e-6)


def test_modality_presence__dropout_rate_seeded_and_training_only():
    cfg = small_cfg(modality_dropout=0.3)
    inputs = make_inputs(cfg, bsz=4000)

    def draw(seed, drop=True):
        gen = torch.Generator().manual_seed(seed)
        return modality_presence(
            cfg, inputs, None, batch_size=4000, device=torch.device("cpu"), drop=drop, generator=gen
        )

    a, b, c = draw(1), draw(1), draw(2)
    for name in cfg.sensors:
        assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name])
        assert abs(1 - a[name].float().mean().item() - 0.3) < 0.03
        assert draw(1, drop=False)[name].all()


def test_fusion_encoder__dropout_seeded_via_generator_and_off_in_eval():
    cfg = small_cfg(modality_dropout=0.5)
    enc = build(cfg).train()
    inputs = make_inputs(cfg, bsz=16)
    outs = [enc(inputs, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    assert not torch.allclose(outs[0], outs[2])
    enc.eval()
    no_drop = dataclasses.replace(cfg, modality_dropout=0.0)
    reference = FusionEncoder(no_drop).eval()
    reference.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc(inputs), reference(inputs), atol=0, rtol=0)


def test_fusion_encoder__deterministic_under_seed():
    cfg = small_cfg()
    inputs = make_inputs(cfg)
    torch.testing.assert_close(
        build(cfg, seed=5)(inputs), build(cfg, seed=5)(inputs), atol=0, rtol=0
    )
    assert not torch.allclose(build(cfg, seed=5)(inputs), build(cfg, seed=6)(inputs))


@pytest.mark.parametrize(
    "field, value",
    [
        ("d_model", 30),
        ("n_heads", 0),
        ("top_k", 0),
        ("modality_dropout", 1.0),
        ("sensors", ("radar",)),
        ("camera_patch", 7),
        ("lidar_tokens", 7),
        ("occupancy_patch", 5),
    ],
)
def test_fusion_config__invalid_field_raises_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(FusionConfig(), **{field: value})


_BAD_INPUTS = [
    ("unknown key", lambda i: dict(i, radar=torch.zeros(B)), None, "unknown key"),
    ("no proprio", lambda i: without(i, "proprio"), None, "proprio"),
    ("half camera", lambda i: without(i, "camera_depth"), None, "both"),
    ("lidar beams", lambda i: dict(i, lidar=torch.zeros(B, 5)), None, "lidar"),
    ("batch", lambda i: dict(i, lidar=i["lidar"][:2]), None, "batch size"),
    ("presence dtype", lambda i: i, {"lidar": torch.ones(B)}, "present"),
    ("presence name", lambda i: i, {"proprio": torch.ones(B, dtype=torch.bool)}, "present"),
]


@pytest.mark.parametrize("case", _BAD_INPUTS, ids=[c[0] for c in _BAD_INPUTS])
def test_fusion_encoder__bad_inputs_raise_value_error(case):
    _, edit, present, message = case
    cfg = small_cfg()
    with pytest.raises(ValueError, match=message):
        build(cfg)(edit(make_inputs(cfg)), present)


def test_fusion_encoder__torch_export_matches_eager():
    cfg = small_cfg(top_k=4)
    enc = build(cfg)
    inputs = without(make_inputs(cfg), "camera_rgb", "camera_depth")
    exported = torch.export.export(enc, (inputs,))
    other = without(make_inputs(cfg, seed=3), "camera_rgb", "camera_depth")
    torch.testing.assert_close(exported.module()(other), enc(other))


# ---------------------------------------------------------------------- tiny learning task


def goal_bearing_batch(cfg: FusionConfig, n: int, gen: torch.Generator):
    """Synthetic frames where a beacon at bearing theta shows in lidar and camera.

    Lidar: 8 m walls, 2 m beacon on the beams around theta, a few no-return beams.
    Camera: panoramic, a red column at x ~ theta, 2 m depth there, 8 m elsewhere.
    Proprio: noise only (no goal information). Target: (sin theta, cos theta).
    """
    theta = (torch.rand(n, generator=gen) * 2 - 1) * math.pi  # [n] rad
    beams = torch.arange(cfg.lidar_beams) * 2 * math.pi / cfg.lidar_beams - math.pi
    gap = torch.remainder(beams[None, :] - theta[:, None] + math.pi, 2 * math.pi) - math.pi
    near = gap.abs() < 1.5 * 2 * math.pi / cfg.lidar_beams  # [n, N]
    lidar = 8.0 + 0.1 * torch.randn(n, cfg.lidar_beams, generator=gen)
    lidar = torch.where(torch.rand(n, cfg.lidar_beams, generator=gen) < 0.1, math.inf, lidar)
    lidar = torch.where(near, 2.0, lidar)
    height, width = cfg.camera_size
    cols = torch.arange(width) * 2 * math.pi / width - math.pi
    col_gap = torch.remainder(cols[None, :] - theta[:, None] + math.pi, 2 * math.pi) - math.pi
    column = (col_gap.abs() < 2.5 * 2 * math.pi / width)[:, None, :].expand(n, height, width)
    rgb = torch.randint(0, 40, (n, height, width, 3), generator=gen, dtype=torch.uint8)
    rgb[..., 0] = torch.where(column, 255, rgb[..., 0].long()).to(torch.uint8)
    depth = torch.where(column, 2.0, 8.0)
    inputs = {
        "proprio": 0.1 * torch.randn(n, cfg.proprio_dim, generator=gen),
        "lidar": lidar,
        "camera_rgb": rgb,
        "camera_depth": depth,
    }
    return inputs, torch.stack([theta.sin(), theta.cos()], dim=-1)


@pytest.fixture
def one_thread():
    """Single-threaded torch: steadier timing on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fusion_encoder__learns_goal_bearing_and_survives_a_dropped_modality(one_thread):
    start = time.process_time()  # CPU seconds of this process: robust to a busy machine
    cfg = FusionConfig(
        d_model=32,
        n_heads=4,
        n_layers=1,
        sensors=("camera", "lidar"),
        camera_size=(16, 32),
        camera_patch=8,
        lidar_beams=32,
        lidar_tokens=8,
        modality_dropout=0.25,
    )
    torch.manual_seed(0)
    model = nn.ModuleDict({"enc": FusionEncoder(cfg), "head": nn.Linear(cfg.d_model, 2)})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    drop_gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(250):
        inputs, target = goal_bearing_batch(cfg, 32, gen)
        pred = model["head"](model["enc"](inputs, generator=drop_gen))
        loss = (pred - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    inputs, target = goal_bearing_batch(cfg, 256, torch.Generator().manual_seed(99))
    no = torch.zeros(256, dtype=torch.bool)
    with torch.no_grad():
        errors = {
            name: (model["head"](model["enc"](inputs, present)) - target).pow(2).mean().item()
            for name, present in {
                "full": None,
                "no_camera": {"camera": no},
                "no_lidar": {"lidar": no},
            }.items()
        }
        blind = model["head"](model["enc"](inputs, {"camera": no, "lidar": no})) - target
    elapsed = time.process_time() - start
    print(f"goal bearing MSE {errors}, blind {blind.pow(2).mean().item():.3f}, {elapsed:.1f} CPU s")
    # Predicting (0, 0) scores 0.5; a sensor-blind model cannot beat it by much.
    assert errors["full"] < 0.03, errors
    assert errors["no_camera"] < 0.06 and errors["no_lidar"] < 0.06, errors
    assert blind.pow(2).mean().item() > 0.3
    assert elapsed < 20.0, f"took {elapsed:.1f} CPU s"
