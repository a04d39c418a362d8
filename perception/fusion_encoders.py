"""Per-modality token encoders for the cross-modal fusion encoder.

Each encoder maps one sensor reading to ``tokens`` (B, T, d_model) and ``valid`` (B, T) bool
(True where the token carries information). Every encoder produces finite tokens for any
input, including inf / NaN readings, so a masked modality can never leak NaN into attention.
Modality and positional embeddings are added by ``FusionEncoder``, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .fusion import FusionConfig


def _check_shape(name: str, x: torch.Tensor, expected: tuple[int | None, ...]) -> None:
    """Raises ValueError unless x has the expected shape (None = any size)."""
    ok = x.dim() == len(expected) and all(e is None or s == e for s, e in zip(x.shape, expected))
    if not ok:
        shown = tuple("B" if e is None else e for e in expected)
        raise ValueError(f"inputs['{name}'] must have shape {shown}, got {tuple(x.shape)}")


class CameraEncoder(nn.Module):
    """RGB-D camera -> patch tokens with a small conv patchifier.

    A stride-2 3x3 conv stem, then a (patch/2)-strided conv: one token per ``camera_patch``
    pixel square, e.g. 64x64 pixels with 16-pixel patches -> 16 tokens.
    Input channels: RGB in [0, 1], depth / max_depth in [0, 1], depth-valid flag.
    """

    def __init__(self, cfg: FusionConfig, hidden: int = 32) -> None:
        super().__init__()
        self.size = cfg.camera_size
        self.max_depth_m = cfg.max_depth_m
        self.stem = nn.Conv2d(5, hidden, kernel_size=3, stride=2, padding=1)
        half = cfg.camera_patch // 2
        self.patch = nn.Conv2d(hidden, cfg.d_model, kernel_size=half, stride=half)

    @staticmethod
    def num_tokens(cfg: FusionConfig) -> int:
        return (cfg.camera_size[0] // cfg.camera_patch) * (cfg.camera_size[1] // cfg.camera_patch)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes one RGB-D frame per sample.

        Args:
            rgb: (B, H, W, 3) uint8 (0-255) or float in [0, 1].
            depth: (B, H, W) metres; non-finite or <= 0 means no depth at that pixel.

        Returns:
            tokens (B, T, d_model) and valid (B, T) bool (all True).
        """
        height, width = self.size
        _check_shape("camera_rgb", rgb, (None, height, width, 3))
        _check_shape("camera_depth", depth, (rgb.shape[0], height, width))
        dtype = self.stem.weight.dtype
        scale = 1.0 / 255.0 if rgb.dtype == torch.uint8 else 1.0
        color = (rgb.to(dtype) * scale).clamp(0.0, 1.0).permute(0, 3, 1, 2)  # [B, 3, H, W]
        depth = depth.to(dtype)
        depth_ok = torch.isfinite(depth) & (depth > 0)  # [B, H, W]
        depth_n = torch.where(depth_ok, depth.clamp(0.0, self.max_depth_m), 0.0) / self.max_depth_m
        x = torch.cat([color, depth_n[:, None], depth_ok[:, None].to(dtype)], dim=1)  # [B,5,H,W]
        x = self.patch(F.gelu(self.stem(x)))  # [B, d, H/p, W/p]
        tokens = x.flatten(2).transpose(1, 2)  # [B, T, d]
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return tokens, valid


class LidarEncoder(nn.Module):
    """2-D lidar scan -> one token per angular sector.

    Per-beam features: range / max_range (no return = max range), no-return flag, valid flag.
    Two circular 1-D convs (the scan wraps around), then a sector-strided conv: ``lidar_beams
    / lidar_tokens`` beams per token. A sector whose beams are all invalid (NaN / negative) is
    masked; a sector of "no return" beams is valid (free space is information).
    """

    def __init__(self, cfg: FusionConfig, hidden: int = 32) -> None:
        super().__init__()
        self.beams = cfg.lidar_beams
        self.tokens = cfg.lidar_tokens
        self.max_range_m = cfg.lidar_max_range_m
        self.conv1 = nn.Conv1d(3, hidden, 5, padding=2, padding_mode="circular")
        self.conv2 = nn.Conv1d(hidden, hidden, 5, padding=2, padding_mode="circular")
        per_sector = cfg.lidar_beams // cfg.lidar_tokens
        self.sector = nn.Conv1d(hidden, cfg.d_model, per_sector, stride=per_sector)

    @staticmethod
    def num_tokens(cfg: FusionConfig) -> int:
        return cfg.lidar_tokens

    def forward(self, ranges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes one scan per sample.

        Args:
            ranges: (B, N) metres, N = lidar_beams; +inf = no return, NaN = invalid beam.

        Returns:
            tokens (B, lidar_tokens, d_model) and valid (B, lidar_tokens) bool.
        """
        _check_shape("lidar", ranges, (None, self.beams))
        dtype = self.conv1.weight.dtype
        ranges = ranges.to(dtype)
        no_return = torch.isposinf(ranges)  # [B, N]
        beam_ok = torch.isfinite(ranges) & (ranges >= 0)
        clipped = torch.where(beam_ok, ranges.clamp(0.0, self.max_range_m), 0.0)
        norm = torch.where(no_return, self.max_range_m, clipped) / self.max_range_m
        x = torch.stack([norm, no_return.to(dtype), beam_ok.to(dtype)], dim=1)  # [B, 3, N]
        x = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        tokens = self.sector(x).transpose(1, 2)  # [B, T, d]
        observed = (beam_ok | no_return).view(ranges.shape[0], self.tokens, -1)  # [B, T, N/T]
        return tokens, observed.any(dim=-1)


class OccupancyEncoder(nn.Module):
    """Local occupancy crop -> patch tokens.

    Channels: occupancy probability in [0, 1] (bool crops map to 0 / 1) and a known flag
    (NaN = unknown cell). A 3x3 conv, then a patch-strided conv: one token per
    ``occupancy_patch`` square, e.g. 32x32 cells with 8-cell patches -> 16 tokens.
    """

    def __init__(self, cfg: FusionConfig, hidden: int = 16) -> None:
        super().__init__()
        self.size = cfg.occupancy_size
        self.conv = nn.Conv2d(2, hidden, 3, padding=1)
        patch = cfg.occupancy_patch
        self.patch = nn.Conv2d(hidden, cfg.d_model, patch, stride=patch)

    @staticmethod
    def num_tokens(cfg: FusionConfig) -> int:
        return (cfg.occupancy_size // cfg.occupancy_patch) ** 2

    def forward(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes one crop per sample.

        Args:
            grid: (B, S, S) bool or float occupancy probability; NaN = unknown.

        Returns:
            tokens (B, T, d_model) and valid (B, T) bool (all True).
        """
        _check_shape("occupancy", grid, (None, self.size, self.size))
        dtype = self.conv.weight.dtype
        grid = grid.to(dtype)
        known = torch.isfinite(grid)
        occ = torch.where(known, grid.clamp(0.0, 1.0), 0.0)
        x = torch.stack([occ, known.to(dtype)], dim=1)  # [B, 2, S, S]
        x = self.patch(F.gelu(self.conv(x)))  # [B, d, S/p, S/p]
        tokens = x.flatten(2).transpose(1, 2)  # [B, T, d]
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return tokens, valid


class ProprioEncoder(nn.Module):
    """Proprioception + task vector (pose estimate, velocity, goal vector, load flag) -> tokens.

    An MLP to ``proprio_tokens`` tokens; these are the agent/task tokens that query the sensors.
    Non-finite entries are replaced by 0.
    """

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.dim = cfg.proprio_dim
        self.tokens = cfg.proprio_tokens
        self.d_model = cfg.d_model
        self.mlp = nn.Sequential(
            nn.Linear(cfg.proprio_dim, 2 * cfg.d_model),
            nn.GELU(),
            nn.Linear(2 * cfg.d_model, cfg.proprio_tokens * cfg.d_model),
        )

    @staticmethod
    def num_tokens(cfg: FusionConfig) -> int:
        return cfg.proprio_tokens

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes the flat vector.

        Args:
            x: (B, proprio_dim) float, SI units (metres, radians, m/s).

        Returns:
            tokens (B, proprio_tokens, d_model) and valid (B, proprio_tokens) bool (all True).
        """
        _check_shape("proprio", x, (None, self.dim))
        x = x.to(self.mlp[0].weight.dtype)
        x = torch.where(torch.isfinite(x), x, 0.0)
        tokens = self.mlp(x).view(x.shape[0], self.tokens, self.d_model)  # [B, Tq, d]
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return tokens, valid
