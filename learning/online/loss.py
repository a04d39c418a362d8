"""The online fine-tuning loss: expert iteration where search targets exist, else TD + advantage.

Per transition (obs s, action a, reward r, next obs s', done d), with the frozen production
network as teacher (``V_t``)::

    td        = r + discount * (1 - d) * V_t(s')
    value     = MSE(V(s), search_value if given else td)
    policy    = CE(search_policy, pi(.|s))                  if a visit distribution is given
              = -min(exp((td - V_t(s)) / beta), w_max) * log pi(a|s)   otherwise (AWR,
                Peng et al. 2019, with the frozen teacher as critic: actions that did
                better than expected are reinforced; the weights stay >= 0, so a noisy
                advantage cannot push a good action's probability to zero)
    loss      = policy + value_weight * value

Search targets (MCTS visit distributions and root values) make it expert iteration
(Anthony et al. 2017); the advantage fallback learns from rewards alone, which is
what a poisoned reward stream (inverted rewards) corrupts and what the gate must catch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from learning.network import PolicyValueNet
from learning.online.replay import Batch

__all__ = ["TorchBatch", "online_loss", "to_torch_batch"]

TorchBatch = dict[str, object]


def to_torch_batch(b: Batch) -> TorchBatch:
    """Numpy :class:`Batch` -> tensors (float32 observations)."""
    f = lambda d: {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in d.items()}  # noqa: E731
    return {
        "obs": f(b.obs),
        "next_obs": f(b.next_obs),
        "action": torch.as_tensor(b.action),
        "reward": torch.as_tensor(b.reward),
        "done": torch.as_tensor(b.done),
        "policy": torch.as_tensor(b.policy),
        "has_policy": torch.as_tensor(b.has_policy),
        "value": torch.as_tensor(b.value),
        "has_value": torch.as_tensor(b.has_value),
    }


def online_loss(
    net: PolicyValueNet,
    teacher: PolicyValueNet,
    b: TorchBatch,
    *,
    discount: float,
    value_weight: float,
    adv_temperature: float,
    adv_weight_max: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Scalar loss of ``net`` on batch ``b`` (see the module docstring).

    Returns:
        (loss, {"policy_loss", "value_loss", "mean_adv_weight"}).
    """
    obs, nxt = b["obs"], b["next_obs"]
    out = net(obs)  # logits [N, A], value [N]
    with torch.no_grad():
        v_s = teacher(obs).value  # [N]
        v_next = teacher(nxt).value  # [N]
        td = b["reward"] + discount * (~b["done"]).float() * v_next
        v_target = torch.where(b["has_value"], b["value"], td)
        a = b["action"][:, None]
        legal = obs["action_mask"].gather(1, a)[:, 0] > 0.5 if "action_mask" in obs else True
        w = torch.exp((td - v_s) / adv_temperature).clamp(max=adv_weight_max)
        w = torch.where(torch.as_tensor(legal), w, torch.zeros_like(w))
    logp = F.log_softmax(out.logits, dim=-1)  # [N, A]
    ce = -(b["policy"] * logp.clamp(min=-1e4)).sum(-1)
    awr = -w * logp.gather(1, a)[:, 0].clamp(min=-1e4)
    policy_loss = torch.where(b["has_policy"], ce, awr).mean()
    value_loss = F.mse_loss(out.value, v_target)
    loss = policy_loss + value_weight * value_loss
    return loss, {
        "policy_loss": float(policy_loss.detach()),
        "value_loss": float(value_loss.detach()),
        "mean_adv_weight": float(w.mean()),
    }
