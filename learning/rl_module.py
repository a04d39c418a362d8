"""The :class:`PolicyValueNet` as an RLlib (new API stack) ``TorchRLModule``; imports Ray.

:class:`PolicyValueRLModule` holds one :class:`PolicyValueNet` (attribute ``net``) and
implements ``ValueFunctionAPI``, so PPO, APPO and IMPALA run it unchanged. Its
observation is the grid-model dict (``proprio`` [B, 12], ``occupancy`` [B, 11, 11],
``action_mask`` [B, 7]; other keys, like the PyBullet env's sensors, are ignored);
illegal actions get ``illegal_logit`` (action masking inside the network, so sampled,
greedy and trained distributions all respect the mask). The logits equal
``net(obs).logits`` exactly (``tests/learning/test_rl_module.py``).

``model_config`` keys (all optional):

* ``pv_config``: dict of :class:`PolicyValueConfig` fields (default: the defaults).
* ``init_weights``: a ``.safetensors`` file loaded into the net at setup (behaviour-
  cloning warm start, e.g. ``learning/weights/grid_pv.safetensors``); None = scratch.
* ``seed``: seed of the initial parameters when starting from scratch (default 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

from learning.checkpoint import load_policy_value
from learning.network import PolicyValueConfig, PolicyValueNet

__all__ = ["NET_KEYS", "PolicyValueRLModule", "pv_config_from", "to_net_inputs"]

NET_KEYS = ("proprio", "occupancy", "action_mask")


def pv_config_from(raw: dict[str, Any] | None) -> PolicyValueConfig:
    """A :class:`PolicyValueConfig` from a plain dict (lists become tuples)."""
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in (raw or {}).items()}
    return PolicyValueConfig(**raw)


def to_net_inputs(obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's keys of an observation batch, as float32 (the env's mask is int8)."""
    return {k: obs[k].float() for k in NET_KEYS if k in obs}


class PolicyValueRLModule(TorchRLModule, ValueFunctionAPI):
    """RLModule over :class:`PolicyValueNet` (see the module docstring)."""

    def setup(self) -> None:
        mc = dict(self.model_config or {})
        cfg = pv_config_from(mc.get("pv_config"))
        init = mc.get("init_weights")
        if init:
            self.net, _ = load_policy_value(init, expected=cfg)
            self.net.train()
        else:
            gen = torch.Generator().manual_seed(int(mc.get("seed", 0)))
            self.net = PolicyValueNet(cfg, generator=gen)

    # ---- forward passes --------------------------------------------------------------
    def _embed(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encoder output h [B, d_model] (the trunk shared by policy and value)."""
        net = self.net
        fusion_in = {"proprio": net._proprio(x["proprio"])}
        if "occupancy" in x:
            fusion_in["occupancy"] = net._pad(x["occupancy"])
        return net.encoder(fusion_in)

    def _logits(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        net = self.net
        logits = net.policy_head(torch.nn.functional.gelu(net.policy_hidden(h)))
        if mask is not None:
            logits = logits.masked_fill(mask <= 0.5, net.config.illegal_logit)
        return logits

    def _value(self, h: torch.Tensor) -> torch.Tensor:
        net = self.net
        return net.value_head(torch.nn.functional.gelu(net.value_hidden(h)))[:, 0]

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        x = to_net_inputs(batch[Columns.OBS])
        h = self._embed(x)
        return {Columns.ACTION_DIST_INPUTS: self._logits(h, x.get("action_mask"))}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        x = to_net_inputs(batch[Columns.OBS])
        h = self._embed(x)
        return {
            Columns.ACTION_DIST_INPUTS: self._logits(h, x.get("action_mask")),
            Columns.EMBEDDINGS: h,
        }

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """Value [B] (discounted return, reward units); reuses ``embeddings`` if given."""
        h = embeddings if embeddings is not None else self._embed(to_net_inputs(batch[Columns.OBS]))
        return self._value(h)

    def pv_config_dict(self) -> dict[str, Any]:
        """The net's config as a JSON-able dict."""
        return dataclasses.asdict(self.net.config)
