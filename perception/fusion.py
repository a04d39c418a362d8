"""Learned cross-modal fusion: sensor tokens -> one fused belief vector per sample.

Layout of one forward pass (B samples, d = d_model)::

    camera (rgb, depth) --CameraEncoder----> [B, Tc, d] -+
    lidar ranges -------LidarEncoder-------> [B, Tl, d]  +-> sensor tokens [B, Ts, d]
    occupancy crop -----OccupancyEncoder---> [B, To, d] -+   + key mask [B, Ts]
    proprio/task vector-ProprioEncoder-----> [B, Tq, d] ---> agent tokens [B, Tq, d]

    n_layers x FusionBlock:
        sensors += SelfAttn(LN(sensors))            (optional, masked keys)
        sensors += MLP(LN(sensors))
        agent   += CrossAttn(LN(agent) -> [LN(sensors); LN(agent)])   (masked sensor keys)
        agent   += MLP(LN(agent))
    fused = LN(mean(agent)) -> [B, d]

Every token carries a learned modality embedding plus a positional embedding within its
modality. Attention runs on ``kernels`` (Triton on CUDA, SDPA on CPU), optionally top-k sparse.

Dynamic modality routing: a missing or failed sensor is masked out of attention through the
key padding mask, never zero-filled into it. A modality absent from ``inputs`` is absent for
every sample (its encoder does not run); ``present[name]`` (bool [B]) removes it per sample.
The proprio/task vector is required and never dropped, so one encoder serves a full sensor
frame, a frame with a dead camera and an imagined planner state (proprio + occupancy only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import kernels

from .fusion_encoders import CameraEncoder, LidarEncoder, OccupancyEncoder, ProprioEncoder

SENSOR_ENCODERS = {"camera": CameraEncoder, "lidar": LidarEncoder, "occupancy": OccupancyEncoder}
SENSOR_INPUTS = {
    "camera": ("camera_rgb", "camera_depth"),
    "lidar": ("lidar",),
    "occupancy": ("occupancy",),
}
PROPRIO = "proprio"
# Positional embeddings start comparable in size to the content features (not the usual 0.02)
# so that which token holds a feature (a bearing, a pixel column) is visible from step 0;
# with 0.02 the tiny bearing task sat on the "uniform attention" plateau for 300+ steps.
POS_EMBED_STD = 0.5


@dataclass(frozen=True)
class FusionConfig:
    """Hyper-parameters of ``FusionEncoder``.

    Attributes:
        d_model: Token width.
        n_heads: Attention heads (d_model % n_heads == 0).
        n_layers: Fusion blocks.
        mlp_ratio: MLP hidden width / d_model.
        top_k: None = dense attention; else keys kept per query (top-k sparse attention).
        self_attention: Sensor tokens self-attend in each block before the cross-attention.
        modality_dropout: Training-time probability of dropping each sensor modality per
            sample (the proprio/task token is never dropped), in [0, 1).
        sensors: Sensor modalities with an encoder, from ("camera", "lidar", "occupancy").
        camera_size: Camera image (height, width), pixels.
        camera_patch: Pixels per camera token side (even, divides camera_size).
        max_depth_m: Depth is clipped to this range, metres.
        lidar_beams: Beams per scan.
        lidar_tokens: Lidar tokens (angular sectors); divides lidar_beams.
        lidar_max_range_m: Lidar range clip and "no return" value, metres.
        occupancy_size: Occupancy crop side, cells.
        occupancy_patch: Cells per occupancy token side; divides occupancy_size.
        proprio_dim: Length of the proprio/task vector (pose, velocity, goal, load flag).
        proprio_tokens: Agent/task tokens made from that vector.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: float = 4.0
    top_k: int | None = None
    self_attention: bool = True
    modality_dropout: float = 0.0
    sensors: tuple[str, ...] = ("camera", "lidar", "occupancy")
    camera_size: tuple[int, int] = (64, 64)
    camera_patch: int = 16
    max_depth_m: float = 10.0
    lidar_beams: int = 64
    lidar_tokens: int = 8
    lidar_max_range_m: float = 20.0
    occupancy_size: int = 32
    occupancy_patch: int = 8
    proprio_dim: int = 8
    proprio_tokens: int = 2

    def __post_init__(self) -> None:
        _positive = (
            "d_model",
            "n_heads",
            "n_layers",
            "camera_patch",
            "lidar_beams",
            "lidar_tokens",
            "occupancy_size",
            "occupancy_patch",
            "proprio_dim",
            "proprio_tokens",
        )
        for name in _positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FusionConfig.{name} must be an int >= 1, got {value!r}")
        for name in ("mlp_ratio", "max_depth_m", "lidar_max_range_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FusionConfig.{name} must be > 0, got {getattr(self, name)!r}")
        self._check_divisibility()
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"FusionConfig.top_k must be None or an int >= 1, got {self.top_k!r}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(
                f"FusionConfig.modality_dropout must be in [0, 1), got {self.modality_dropout!r}"
            )
        unknown = [s for s in self.sensors if s not in SENSOR_ENCODERS]
        if unknown or len(set(self.sensors)) != len(self.sensors):
            raise ValueError(
                f"FusionConfig.sensors must be distinct names from {tuple(SENSOR_ENCODERS)}, "
                f"got {self.sensors!r}"
            )

    def _check_divisibility(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"FusionConfig.d_model ({self.d_model}) must divide by n_heads ({self.n_heads})"
            )
        height, width = self.camera_size
        if self.camera_patch % 2 or height % self.camera_patch or width % self.camera_patch:
            raise ValueError(
                f"FusionConfig.camera_patch must be even and divide camera_size "
                f"{self.camera_size}, got {self.camera_patch}"
            )
        if self.lidar_beams % self.lidar_tokens:
            raise ValueError(
                f"FusionConfig.lidar_tokens ({self.lidar_tokens}) must divide "
                f"lidar_beams ({self.lidar_beams})"
            )
        if self.occupancy_size % self.occupancy_patch:
            raise ValueError(
                f"FusionConfig.occupancy_patch ({self.occupancy_patch}) must divide "
                f"occupancy_size ({self.occupancy_size})"
            )

    def num_tokens(self, modality: str) -> int:
        """Tokens produced by one modality ("proprio" or a sensor name)."""
        if modality == PROPRIO:
            return ProprioEncoder.num_tokens(self)
        return SENSOR_ENCODERS[modality].num_tokens(self)


class MultiHeadAttention(nn.Module):
    """Multi-head attention over ``kernels`` ops with a key padding mask, optionally top-k."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.top_k = cfg.top_k
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(
        self, x_q: torch.Tensor, x_kv: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """Attends queries to keys.

        Args:
            x_q: (B, Lq, d) query tokens.
            x_kv: (B, Lk, d) key/value tokens.
            key_mask: (B, Lk) bool, True where a key token is valid.

        Returns:
            (B, Lq, d).
        """
        bsz, lq, width = x_q.shape
        lk = x_kv.shape[1]
        head_dim = width // self.n_heads
        q = self.q(x_q).view(bsz, lq, self.n_heads, head_dim).transpose(1, 2)  # [B, H, Lq, Dh]
        kv = self.kv(x_kv).view(bsz, lk, 2, self.n_heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]  # [B, H, Lk, Dh]
        if self.top_k is None:
            o = kernels.cross_attention(q, k, v, key_mask)
        else:
            o = kernels.topk_attention(q, k, v, self.top_k, key_mask)
        return self.out(o.transpose(1, 2).reshape(bsz, lq, width))  # [B, Lq, d]


def _mlp(cfg: FusionConfig) -> nn.Sequential:
    hidden = int(cfg.d_model * cfg.mlp_ratio)
    return nn.Sequential(nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.Linear(hidden, cfg.d_model))


class FusionBlock(nn.Module):
    """Pre-norm residual block: optional sensor self-attention, agent cross-attention, MLPs.

    The agent tokens attend to [sensor tokens; agent tokens] (perceiver-resampler style), so a
    sample with every sensor masked still updates its agent tokens from the task.
    """

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.self_attention = cfg.self_attention
        if cfg.self_attention:
            self.self_norm = nn.LayerNorm(cfg.d_model)
            self.self_attn = MultiHeadAttention(cfg)
            self.self_mlp_norm = nn.LayerNorm(cfg.d_model)
            self.self_mlp = _mlp(cfg)
        self.q_norm = nn.LayerNorm(cfg.d_model)
        self.kv_norm = nn.LayerNorm(cfg.d_model)
        self.cross_attn = MultiHeadAttention(cfg)
        self.mlp_norm = nn.LayerNorm(cfg.d_model)
        self.mlp = _mlp(cfg)

    def forward(
        self, agent: torch.Tensor, sensors: torch.Tensor, sensor_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One block.

        Args:
            agent: (B, Tq, d) agent/task tokens.
            sensors: (B, Ts, d) sensor tokens.
            sensor_mask: (B, Ts) bool, True where a sensor token is valid.

        Returns:
            Updated (agent (B, Tq, d), sensors (B, Ts, d)).
        """
        if self.self_attention:
            h = self.self_norm(sensors)
            sensors = sensors + self.self_attn(h, h, sensor_mask)
            sensors = sensors + self.self_mlp(self.self_mlp_norm(sensors))
        q = self.q_norm(agent)
        kv = torch.cat([self.kv_norm(sensors), q], dim=1)  # [B, Ts + Tq, d]
        agent_mask = torch.ones(agent.shape[:2], dtype=torch.bool, device=agent.device)
        mask = torch.cat([sensor_mask, agent_mask], dim=1)  # [B, Ts + Tq]
        agent = agent + self.cross_attn(q, kv, mask)
        agent = agent + self.mlp(self.mlp_norm(agent))
        return agent, sensors


def check_fusion_inputs(
    cfg: FusionConfig, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None
) -> int:
    """Validates the input and presence dicts; returns the batch size B.

    Raises:
        ValueError: unknown or disabled keys, missing proprio, half a camera, batch mismatch,
            malformed presence masks.
    """
    allowed = {PROPRIO, *(key for s in cfg.sensors for key in SENSOR_INPUTS[s])}
    for key, value in inputs.items():
        if key not in allowed:
            raise ValueError(f"inputs has unknown key {key!r}; allowed: {sorted(allowed)}")
        if not isinstance(value, torch.Tensor):
            msg = f"inputs[{key!r}] must be a torch.Tensor, got {type(value).__name__}"
            raise ValueError(msg)  # noqa: TRY004 - bad input is a ValueError throughout
    if PROPRIO not in inputs:
        raise ValueError("inputs['proprio'] is required: the task token is never dropped")
    cam = [k in inputs for k in SENSOR_INPUTS["camera"]]
    if any(cam) and not all(cam):
        raise ValueError("camera needs both inputs['camera_rgb'] and inputs['camera_depth']")
    bsz = inputs[PROPRIO].shape[0]
    for key, value in inputs.items():
        if value.dim() == 0 or value.shape[0] != bsz:
            raise ValueError(
                f"inputs[{key!r}] must have batch size {bsz}, got {tuple(value.shape)}"
            )
    for name, mask in (present or {}).items():
        if name not in cfg.sensors:
            raise ValueError(f"present has unknown modality {name!r}; allowed: {cfg.sensors}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (bsz,):
            raise ValueError(f"present[{name!r}] must be a bool tensor of shape ({bsz},)")
    return bsz


def modality_presence(
    cfg: FusionConfig,
    inputs: dict[str, torch.Tensor],
    present: dict[str, torch.Tensor] | None,
    *,
    batch_size: int,
    device: torch.device,
    drop: bool,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample presence (B,) bool of every configured sensor modality.

    A sensor missing from ``inputs`` is absent for all samples; ``present`` masks it per
    sample; with ``drop`` each sensor is also dropped per sample with probability
    ``cfg.modality_dropout`` (one draw of B uniforms per sensor, in ``cfg.sensors`` order,
    from ``generator`` or the global torch RNG).
    """
    present = present or {}
    out = {}
    for name in cfg.sensors:
        here = SENSOR_INPUTS[name][0] in inputs
        mask = torch.full((batch_size,), here, dtype=torch.bool, device=device)
        if name in present:
            mask = mask & present[name].to(device)
        if drop and cfg.modality_dropout > 0:
            rng_device = generator.device if generator is not None else device
            u = torch.rand(batch_size, generator=generator, device=rng_device).to(device)
            mask = mask & (u >= cfg.modality_dropout)
        out[name] = mask
    return out


class FusionEncoder(nn.Module):
    """Multi-modal sensor + task encoder with masked cross-modal attention.

    Example:
        >>> enc = FusionEncoder(FusionConfig())
        >>> fused = enc({"proprio": torch.zeros(2, 8), "lidar": torch.full((2, 64), 5.0)})
        >>> fused.shape
        torch.Size([2, 64])
    """

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoders = nn.ModuleDict({s: SENSOR_ENCODERS[s](cfg) for s in cfg.sensors})
        self.proprio = ProprioEncoder(cfg)
        names = (*cfg.sensors, PROPRIO)
        self.pos_embed = nn.ParameterDict(
            {n: nn.Parameter(POS_EMBED_STD * torch.randn(cfg.num_tokens(n), d)) for n in names}
        )
        self.modality_embed = nn.ParameterDict(
            {n: nn.Parameter(0.02 * torch.randn(d)) for n in names}
        )
        self.blocks = nn.ModuleList([FusionBlock(cfg) for _ in range(cfg.n_layers)])
        self.out_norm = nn.LayerNorm(d)

    def _embed(self, name: str, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.pos_embed[name] + self.modality_embed[name]  # [B, T, d]

    def _sensor_tokens(
        self, name: str, inputs: dict[str, torch.Tensor], here: torch.Tensor, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, T, d) and mask (B, T) of one sensor; placeholders if not in inputs."""
        keys = SENSOR_INPUTS[name]
        if keys[0] not in inputs:
            shape = (like.shape[0], self.cfg.num_tokens(name))
            tokens = like.new_zeros((*shape, self.cfg.d_model))
            return tokens, torch.zeros(shape, dtype=torch.bool, device=like.device)
        tokens, valid = self.encoders[name](*(inputs[k] for k in keys))
        return self._embed(name, tokens), valid & here[:, None]

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fuses the available modalities.

        Args:
            inputs: "proprio" (B, proprio_dim) required; optional "camera_rgb" (B, H, W, 3)
                uint8 with "camera_depth" (B, H, W) metres, "lidar" (B, lidar_beams) metres,
                "occupancy" (B, S, S).
            present: Optional name -> (B,) bool per-sample presence of a sensor modality.
            generator: RNG for modality dropout (training only); default the global RNG.

        Returns:
            (B, d_model) fused vector.
        """
        bsz = check_fusion_inputs(self.cfg, inputs, present)
        agent, _ = self.proprio(inputs[PROPRIO])
        agent = self._embed(PROPRIO, agent)  # [B, Tq, d]
        here = modality_presence(
            self.cfg,
            inputs,
            present,
            batch_size=bsz,
            device=agent.device,
            drop=self.training,
            generator=generator,
        )
        parts = [self._sensor_tokens(n, inputs, here[n], agent) for n in self.cfg.sensors]
        if parts:
            sensors = torch.cat([t for t, _ in parts], dim=1)  # [B, Ts, d]
            mask = torch.cat([m for _, m in parts], dim=1)  # [B, Ts]
        else:
            sensors = agent.new_zeros((bsz, 0, self.cfg.d_model))
            mask = torch.zeros((bsz, 0), dtype=torch.bool, device=agent.device)
        for block in self.blocks:
            agent, sensors = block(agent, sensors, mask)
        return self.out_norm(agent.mean(dim=1))  # [B, d]
