"""Policy/value network: the fusion encoder with a macro-action policy head and a value head.

One forward pass (B samples, d = ``d_model``, A = ``num_actions``, S = ``crop_size``)::

    occupancy [B, S, S] --pad to P x P with 1.0 (outside = static)--+
    proprio   [B, 12] --+ sin/cos(2^k pi x) of position, goal vector --+--> FusionEncoder -> [B, d]
        -> policy MLP -> logits [B, A] (illegal actions -> ``illegal_logit``)
        -> value MLP  -> value  [B]    (discounted return, reward units)

The occupancy crop of the grid model is odd-sized with the robot in the centre cell; it is
padded symmetrically to the next odd multiple of ``occupancy_patch`` so that the robot
stays in the centre patch token (e.g. 11 cells, patch 5 -> 15 cells, 3 x 3 = 9 tokens;
the default patch 11 -> one token).
Keys the encoder does not know (``action_mask``) are consumed here, never passed on, and
modalities missing from the input are masked out by the encoder (dynamic routing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from perception.fusion import POS_EMBED_STD, FusionConfig, FusionEncoder

__all__ = [
    "ILLEGAL_LOGIT",
    "PolicyValueConfig",
    "PolicyValueNet",
    "PolicyValueOutput",
    "reset_parameters",
]

ILLEGAL_LOGIT = -1e9
OCC_OUTSIDE = 1.0  # grid-model code for "static obstacle or outside the map"


@dataclass(frozen=True)
class PolicyValueConfig:
    """Hyper-parameters of :class:`PolicyValueNet` (validated; ValueError names the field).

    Attributes:
        d_model: Token width of the fusion encoder.
        n_heads: Attention heads (``d_model % n_heads == 0``).
        n_layers: Fusion blocks.
        mlp_ratio: Fusion MLP hidden width / d_model.
        self_attention: Occupancy tokens self-attend in each block (off by default: with
            one occupancy token it is a no-op costing an MLP per block).
        proprio_dim: Length of the proprio/task vector (12 for the grid model).
        fourier_bands: Sin/cos bands appended for each proprio entry in ``fourier_index``
            (frequencies ``2**k * pi``, k < bands; 0 = off). The value (steps left along
            the aisles) is a high-frequency function of the position: an MLP on raw
            coordinates learns it slowly, Fourier features make it easy (Tancik et al.,
            NeurIPS 2020).
        fourier_index: Proprio entries expanded (grid model: position 0, 1 and goal
            vector 8, 9).
        proprio_tokens: Agent/task tokens made from that vector.
        crop_size: Side of the occupancy crop fed in, cells (odd; grid model ``crop_size``).
        occupancy_patch: Cells per occupancy token side (odd). The default, equal to the
            crop, makes one token of the whole crop: the 3x3 conv features reach it
            through one crop-sized linear map (a global receptive field). That is the
            fastest setting on CPU: ~18 ms for 256 states and ~3 ms for one, on one
            thread, most of it in the encoder's occupancy conv stem (patch 5, 9 tokens,
            with self-attention: ~3x slower).
        head_hidden: Hidden width of the policy and value MLP heads.
        num_actions: A, macro actions (7: N, S, E, W, wait, pick, drop).
        illegal_logit: Logit given to actions with ``action_mask == 0``.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: float = 2.0
    self_attention: bool = False
    proprio_dim: int = 12
    fourier_bands: int = 6
    fourier_index: tuple[int, ...] = (0, 1, 8, 9)
    proprio_tokens: int = 2
    crop_size: int = 11
    occupancy_patch: int = 11
    head_hidden: int = 64
    num_actions: int = 7
    illegal_logit: float = ILLEGAL_LOGIT

    def __post_init__(self) -> None:
        minimum = {"fourier_bands": 0}
        for f in fields(self):
            v, lo = getattr(self, f.name), minimum.get(f.name, 1)
            if f.type == "int" and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
                raise ValueError(f"PolicyValueConfig.{f.name}: {v!r}; allowed integer >= {lo}")
        if not isinstance(self.fourier_index, tuple) or not all(
            isinstance(i, int) and 0 <= i < self.proprio_dim for i in self.fourier_index
        ):
            raise ValueError(
                f"PolicyValueConfig.fourier_index: {self.fourier_index!r}; allowed "
                f"a tuple of ints in [0, proprio_dim={self.proprio_dim})"
            )
        if not self.mlp_ratio > 0:
            raise ValueError(f"PolicyValueConfig.mlp_ratio: {self.mlp_ratio!r}; allowed > 0")
        for name in ("crop_size", "occupancy_patch"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"PolicyValueConfig.{name}: {getattr(self, name)}; allowed odd")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"PolicyValueConfig.n_heads: {self.n_heads}; allowed a divisor "
                f"of d_model={self.d_model}"
            )
        if not self.illegal_logit < -1e3:
            raise ValueError(
                f"PolicyValueConfig.illegal_logit: {self.illegal_logit!r}; allowed < -1e3"
            )

    @property
    def padded_size(self) -> int:
        """Occupancy side after padding: the smallest odd multiple of the patch >= crop."""
        n = math.ceil(self.crop_size / self.occupancy_patch)
        n += 1 - n % 2
        return n * self.occupancy_patch

    def fusion_config(self) -> FusionConfig:
        """The encoder config (occupancy is the only sensor modality of the grid model)."""
        return FusionConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            mlp_ratio=self.mlp_ratio,
            self_attention=self.self_attention,
            sensors=("occupancy",),
            occupancy_size=self.padded_size,
            occupancy_patch=self.occupancy_patch,
            proprio_dim=self.encoder_proprio_dim,
            proprio_tokens=self.proprio_tokens,
        )

    @property
    def encoder_proprio_dim(self) -> int:
        """Width of the proprio vector after the Fourier features."""
        return self.proprio_dim + 2 * self.fourier_bands * len(self.fourier_index)

    def obs_spec(self) -> dict[str, list[int]]:
        """Per-sample input shapes (without the batch dim)."""
        return {
            "proprio": [self.proprio_dim],
            "occupancy": [self.crop_size, self.crop_size],
            "action_mask": [self.num_actions],
        }


class PolicyValueOutput(NamedTuple):
    """Network outputs.

    Attributes:
        logits: [B, A] float32 policy logits; illegal actions at ``illegal_logit``.
        value: [B] float32 predicted discounted return (reward units).
    """

    logits: torch.Tensor
    value: torch.Tensor


def _head(d_in: int, hidden: int, d_out: int) -> tuple[nn.Linear, nn.Linear]:
    return nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)


class PolicyValueNet(nn.Module):
    """FusionEncoder -> policy logits over macro actions + scalar value.

    Args:
        config: hyper-parameters (default: small, d_model 64, 2 layers).
        generator: draws every initial parameter (see :func:`reset_parameters`); None
            keeps torch's default initialisation from the global RNG.

    Example:
        >>> net = PolicyValueNet(PolicyValueConfig(), generator=torch.Generator().manual_seed(0))
        >>> out = net({"proprio": torch.zeros(2, 12), "occupancy": torch.zeros(2, 11, 11)})
        >>> out.logits.shape, out.value.shape
        (torch.Size([2, 7]), torch.Size([2]))
    """

    def __init__(
        self, config: PolicyValueConfig | None = None, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else PolicyValueConfig()
        self.encoder = FusionEncoder(cfg.fusion_config())
        self.policy_hidden, self.policy_head = _head(cfg.d_model, cfg.head_hidden, cfg.num_actions)
        self.value_hidden, self.value_head = _head(cfg.d_model, cfg.head_hidden, 1)
        self.register_buffer(
            "fourier_freq", math.pi * 2.0 ** torch.arange(cfg.fourier_bands), persistent=False
        )  # [F] rad per unit
        if generator is not None:
            reset_parameters(self, generator)

    def _pad(self, occ: torch.Tensor) -> torch.Tensor:
        s = self.config.crop_size
        if occ.dim() != 3 or occ.shape[1:] != (s, s):
            raise ValueError(
                f"inputs['occupancy'] must have shape (B, {s}, {s}), got {tuple(occ.shape)}"
            )
        p = (self.config.padded_size - s) // 2
        occ = occ.to(self.policy_head.weight.dtype)
        return F.pad(occ, (p, p, p, p), value=OCC_OUTSIDE) if p else occ  # [B, P, P]

    def _proprio(self, x: torch.Tensor) -> torch.Tensor:
        """[B, proprio_dim] -> [B, encoder_proprio_dim]: raw entries + sin/cos features."""
        cfg = self.config
        if x.dim() != 2 or x.shape[1] != cfg.proprio_dim:
            raise ValueError(
                f"inputs['proprio'] must have shape (B, {cfg.proprio_dim}), got {tuple(x.shape)}"
            )
        x = x.to(self.policy_head.weight.dtype)
        if not cfg.fourier_bands:
            return x
        ang = x[:, list(cfg.fourier_index), None] * self.fourier_freq  # [B, I, F]
        feats = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).flatten(1)  # [B, 2 I F]
        return torch.cat([x, feats], dim=1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> PolicyValueOutput:
        """Evaluates a batch.

        Args:
            inputs: "proprio" [B, proprio_dim] (required), "occupancy" [B, S, S] (optional:
                absent = masked out), "action_mask" [B, A] (optional; > 0.5 = legal).

        Returns:
            :class:`PolicyValueOutput` with logits [B, A] and value [B].
        """
        if "proprio" not in inputs:
            raise ValueError("inputs['proprio'] is required")
        fusion_in = {"proprio": self._proprio(inputs["proprio"])}
        if "occupancy" in inputs:
            fusion_in["occupancy"] = self._pad(inputs["occupancy"])
        h = self.encoder(fusion_in)  # [B, d]
        logits = self.policy_head(F.gelu(self.policy_hidden(h)))  # [B, A]
        value = self.value_head(F.gelu(self.value_hidden(h)))[:, 0]  # [B]
        mask = inputs.get("action_mask")
        if mask is not None:
            if mask.shape != logits.shape:
                raise ValueError(
                    f"inputs['action_mask'] must have shape {tuple(logits.shape)}, "
                    f"got {tuple(mask.shape)}"
                )
            logits = logits.masked_fill(mask <= 0.5, self.config.illegal_logit)
        return PolicyValueOutput(logits, value)


def reset_parameters(net: nn.Module, generator: torch.Generator) -> None:
    """Redraws every parameter of ``net`` from ``generator`` (reproducible initialisation).

    Rules by name (in ``named_parameters`` order): ``pos_embed`` ~ N(0, POS_EMBED_STD),
    ``modality_embed`` ~ N(0, 0.02), norm weights 1, biases 0, other weights
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default bound for Linear / Conv).

    Args:
        net: the module.
        generator: a CPU torch.Generator.
    """
    with torch.no_grad():
        for name, p in net.named_parameters():
            tmp = torch.empty(p.shape, dtype=p.dtype)
            if "pos_embed" in name:
                tmp.normal_(0.0, POS_EMBED_STD, generator=generator)
            elif "modality_embed" in name:
                tmp.normal_(0.0, 0.02, generator=generator)
            elif name.endswith("bias"):
                tmp.zero_()
            elif p.dim() == 1:  # LayerNorm weight
                tmp.fill_(1.0)
            else:
                bound = 1.0 / math.sqrt(p[0].numel())
                tmp.uniform_(-bound, bound, generator=generator)
            p.copy_(tmp)
