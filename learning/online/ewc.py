"""Elastic weight consolidation (Kirkpatrick et al., PNAS 2017), diagonal, hand-written.

Full-weights fine-tuning adds ``lambda / 2 * sum_i F_i (theta_i - theta*_i)**2`` to the
loss: ``theta*`` are the previous (production) weights and ``F`` the diagonal empirical
Fisher information of the loss at ``theta*``, estimated as the mean squared gradient over
micro-batches of replay data. The state (anchor + Fisher) is saved as safetensors
(``anchor.<param>``, ``fisher.<param>``) so a resumed learner keeps protecting the same
weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

__all__ = ["EWCState", "diagonal_fisher", "ewc_penalty", "load_ewc", "save_ewc"]


@dataclass(frozen=True)
class EWCState:
    """Anchor weights and their diagonal Fisher (same names and shapes as the parameters).

    Attributes:
        anchor: param name -> theta* (detached copy).
        fisher: param name -> F >= 0.
        n_samples: samples the Fisher was estimated from.
    """

    anchor: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor]
    n_samples: int


def diagonal_fisher(
    net: nn.Module, batches: Iterable[object], loss_fn: Callable[[nn.Module, object], torch.Tensor]
) -> EWCState:
    """Empirical diagonal Fisher at the current weights of ``net``.

    Args:
        net: the network (its weights become the anchor; left unchanged).
        batches: micro-batches (whatever ``loss_fn`` takes); each gives one gradient.
        loss_fn: ``(net, batch) -> scalar loss``.

    Returns:
        The :class:`EWCState` (Fisher = mean over micro-batches of grad**2).
    """
    params = {n: p for n, p in net.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    n = 0
    for batch in batches:
        net.zero_grad(set_to_none=True)
        loss_fn(net, batch).backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
        n += 1
    net.zero_grad(set_to_none=True)
    scale = 1.0 / max(n, 1)
    return EWCState(
        anchor={k: p.detach().clone() for k, p in params.items()},
        fisher={k: v * scale for k, v in fisher.items()},
        n_samples=n,
    )


def ewc_penalty(net: nn.Module, state: EWCState, lam: float) -> torch.Tensor:
    """``lam / 2 * sum_i F_i (theta_i - theta*_i)**2`` over the anchored parameters."""
    total = torch.zeros(())
    for name, p in net.named_parameters():
        if name in state.fisher:
            total = total + (state.fisher[name] * (p - state.anchor[name]) ** 2).sum()
    return 0.5 * lam * total


def save_ewc(state: EWCState, path: str | Path, *, lam: float) -> Path:
    """Writes ``state`` as safetensors (``anchor.*``, ``fisher.*``; lambda in the metadata)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"ewc: path {str(path)!r} must end in '.safetensors'")
    tensors = {f"anchor.{k}": v.contiguous() for k, v in state.anchor.items()}
    tensors.update({f"fisher.{k}": v.contiguous() for k, v in state.fisher.items()})
    meta = {"format": "forklift.ewc", "lambda": repr(float(lam)), "n_samples": str(state.n_samples)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_ewc(path: str | Path) -> tuple[EWCState, float]:
    """Reads a state written by :func:`save_ewc`; returns (state, lambda).

    Raises:
        ValueError: not a forklift EWC file, unmatched anchor/Fisher names, bad values.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for unreadable files
        raise ValueError(f"ewc: unreadable state {str(path)!r}: {e}") from None
    if meta.get("format") != "forklift.ewc":
        raise ValueError(f"ewc: {str(path)!r} is not a forklift EWC file")
    anchor = {k[7:]: v for k, v in tensors.items() if k.startswith("anchor.")}
    fisher = {k[7:]: v for k, v in tensors.items() if k.startswith("fisher.")}
    if set(anchor) != set(fisher) or len(anchor) + len(fisher) != len(tensors):
        raise ValueError(f"ewc: {str(path)!r} anchor and fisher tensors do not match")
    for k, v in tensors.items():
        if not bool(torch.isfinite(v).all()) or (k.startswith("fisher.") and bool((v < 0).any())):
            raise ValueError(f"ewc: tensor {k!r} is non-finite or a negative Fisher")
    state = EWCState(anchor, fisher, int(json.loads(meta.get("n_samples", "0"))))
    return state, float(meta["lambda"])
