"""Batched state helpers: a minimal pytree over numpy arrays.

A *batch of states* is a pytree whose leaves are ``np.ndarray`` with a leading batch
dimension ``B``. Supported containers: ``dict``, ``list``, ``tuple``, ``NamedTuple`` and
dataclasses (rebuilt with their constructor, so frozen dataclasses work). The search
tree stores states as the same pytree with leaves ``[B, N, ...]`` (one slot per node).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "batch_size",
    "tree_alloc_nodes",
    "tree_concat",
    "tree_gather",
    "tree_leaves",
    "tree_map",
    "tree_scatter_nodes",
    "tree_take",
    "tree_take_nodes",
]


def tree_map(fn: Callable[..., np.ndarray], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leafwise over one or more pytrees of identical structure."""
    if isinstance(tree, np.ndarray):
        return fn(tree, *rest)
    if isinstance(tree, dict):
        return {k: tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        kw = {
            f.name: tree_map(fn, getattr(tree, f.name), *(getattr(r, f.name) for r in rest))
            for f in dataclasses.fields(tree)
            if f.init
        }
        return type(tree)(**kw)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(fn, *xs) for xs in zip(tree, *rest)))
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, *xs) for xs in zip(tree, *rest))
    return fn(tree, *rest)


def tree_leaves(tree: Any) -> list[np.ndarray]:
    """The leaves of ``tree`` in a deterministic order."""
    out: list[np.ndarray] = []
    tree_map(lambda x: out.append(x) or x, tree)
    return out


def batch_size(states: Any) -> int:
    """Leading dimension shared by all leaves.

    Raises:
        ValueError: no leaves, or leaves disagree on the batch size.
    """
    sizes = {int(np.shape(x)[0]) for x in tree_leaves(states)}
    if len(sizes) != 1:
        raise ValueError(
            f"states: leading dimensions {sorted(sizes)}; allowed one shared batch size"
        )
    return sizes.pop()


def tree_take(states: Any, idx: np.ndarray) -> Any:
    """``states[idx]`` leafwise (idx: [b] int or bool mask)."""
    return tree_map(lambda x: x[idx], states)


def tree_gather(states: Any, idx: np.ndarray) -> Any:
    """Alias of :func:`tree_take` for readability at call sites."""
    return tree_take(states, idx)


def tree_concat(trees: list[Any]) -> Any:
    """Concatenate batches along the leading dimension."""
    return tree_map(lambda *xs: np.concatenate(xs, axis=0), *trees)


def tree_alloc_nodes(states: Any, n_nodes: int) -> Any:
    """Zeroed node storage: leaves ``[B, ...]`` -> ``[B, n_nodes, ...]`` of the same dtype."""
    return tree_map(lambda x: np.zeros((x.shape[0], n_nodes, *x.shape[1:]), dtype=x.dtype), states)


def tree_take_nodes(store: Any, b: np.ndarray, n: np.ndarray) -> Any:
    """Gather one node per row: ``store[b, n]`` leafwise -> batch of states ``[len(b), ...]``."""
    return tree_map(lambda x: x[b, n], store)


def tree_scatter_nodes(store: Any, b: np.ndarray, n: np.ndarray, states: Any) -> None:
    """In place: ``store[b, n] = states`` leafwise."""

    def _set(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x[b, n] = y
        return x

    tree_map(_set, store, states)
