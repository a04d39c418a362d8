"""The planner's network evaluator on onnxruntime: the same protocol as
:class:`learning.evaluator.NetworkEvaluator`, several times faster per small batch on one core.

Why: a fleet decision is one batched search of ``num_simulations`` sequential network
calls over a handful of rows (the deciding robots), where eager torch's per-call cost
(39 module calls per forward of this small network) is what counts (the decision-latency
contract is one core, p99 <= 50 ms per fleet decision). ``python benchmarks/bench_evaluator.py`` on the
shared 2-core machine: a 4-row call 1.46 ms (torch) vs 0.29 ms (onnxruntime, one
intra-op thread), one 4-robot 16-simulation decision 40.6 vs 13.6 ms, same actions.

The graph is :func:`learning.export.export_onnx`'s (parity-checked against torch at
export, max abs difference <= ``1e-4``), cached per weights file under
``$FORKLIFT_CACHE_DIR/onnx/<sha256 of the safetensors>.onnx`` (default
``~/.cache/forklift``): the first use of a weights file on a machine exports it (a few
seconds), later ones load the cached graph. Weights come only from safetensors; the cache
holds ONNX only, and is keyed by the content hash, so a changed weights file never meets a
stale graph.

The online learner swaps torch weights while the robots run, so ``learning=online`` keeps
the torch evaluator (``agent.planners``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxEvaluator", "cache_dir", "load_onnx_evaluator"]


def cache_dir() -> Path:
    """Where exported graphs are cached: ``$FORKLIFT_CACHE_DIR`` or ``~/.cache/forklift``."""
    return Path(os.environ.get("FORKLIFT_CACHE_DIR") or Path.home() / ".cache" / "forklift")


class OnnxEvaluator:
    """Batched prior + value from an exported policy/value graph on onnxruntime.

    Args:
        model: the ONNX graph (bytes) with :data:`learning.export.INPUT_NAMES` inputs.
        num_actions: width of the logits.
        source: the weights file it was exported from (for reports).

    ``evaluate(encoded)`` takes :meth:`planning.grid_model.GridModel.encode`'s dict
    (``proprio`` [B, 12], ``occupancy`` [B, S, S], ``action_mask`` [B, 7]) and returns
    ``(prior_logits [B, 7] float32, values [B] float32)``. Picklable (the graph travels as
    bytes; the session is rebuilt), one intra-op thread.
    """

    def __init__(self, model: bytes, num_actions: int, *, source: str = "") -> None:
        self._model = bytes(model)
        self.num_actions = int(num_actions)
        self.source = source
        self._session = self._open(self._model)

    @staticmethod
    def _open(model: bytes) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self._model, "num_actions": self.num_actions, "source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state["num_actions"], source=state["source"])

    def evaluate(self, encoded: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Encoded states -> (prior_logits [B, A] float32, values [B] float32).

        A missing ``occupancy`` is the absent modality (encoded from proprio alone).
        """
        if "proprio" not in encoded or "action_mask" not in encoded:
            raise ValueError("evaluator input: missing key 'proprio' or 'action_mask'; allowed the dict of "
                             "GridModel.encode (proprio, occupancy, action_mask)")
        proprio = np.ascontiguousarray(encoded["proprio"], np.float32)
        n = len(proprio)
        occ = encoded.get("occupancy")
        present = np.full(n, occ is not None, dtype=bool)
        if occ is None:
            s = self._session.get_inputs()[1].shape[-1]
            occ = np.zeros((n, s, s), np.float32)
        logits, value = self._session.run(None, {
            "proprio": proprio, "occupancy": np.ascontiguousarray(occ, np.float32),
            "action_mask": np.ascontiguousarray(encoded["action_mask"], np.float32),
            "occupancy_present": present})
        return np.asarray(logits, np.float32), np.asarray(value, np.float32).reshape(n)


def load_onnx_evaluator(path: str | Path | None = None) -> OnnxEvaluator:
    """An :class:`OnnxEvaluator` for the safetensors weights ``path`` (default: the shipped
    weights), exporting and parity-checking it into the cache on first use.

    Raises:
        ValueError: a bad weights file, or an export that fails its parity check (one line).
    """
    from learning.checkpoint import _sha256
    from learning.evaluator import DEFAULT_WEIGHTS
    from learning.export import export_onnx

    weights = Path(DEFAULT_WEIGHTS if path is None else path)
    if not weights.is_file():
        raise ValueError(f"learning.checkpoint: {weights}: no such file; allowed a .safetensors weights file")
    name = f"{_sha256(weights)}.onnx"
    graph = cache_dir() / "onnx" / name
    if not graph.is_file():
        try:
            graph.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # an unwritable home: a per-user temp cache
            import tempfile

            graph = Path(tempfile.gettempdir()) / f"forklift-{os.getuid()}" / "onnx" / name
            graph.parent.mkdir(parents=True, exist_ok=True)
        tmp = graph.with_name(f"{graph.stem}.{os.getpid()}.tmp.onnx")
        try:
            export_onnx(weights, tmp, batch=16)
            os.replace(tmp, graph)  # atomic: a concurrent process sees the whole file or none
        finally:
            for p in (tmp, tmp.with_suffix(".json")):
                p.unlink(missing_ok=True)
    from learning.checkpoint import read_metadata

    num_actions = int(read_metadata(weights)["config"]["num_actions"])
    return OnnxEvaluator(graph.read_bytes(), num_actions, source=str(weights))
