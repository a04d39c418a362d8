"""planner.runtime=onnx: the onnxruntime evaluator equals the torch one, is cached per
weights content, survives pickling (Ray), and is what the agent gets by default."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from learning.evaluator import DEFAULT_WEIGHTS, NetworkEvaluator, load_network_evaluator
from learning.export import parity_inputs
from learning.onnx_evaluator import OnnxEvaluator, cache_dir, load_onnx_evaluator


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    old = os.environ.get("FORKLIFT_CACHE_DIR")
    d = tmp_path_factory.mktemp("cache")
    os.environ["FORKLIFT_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("FORKLIFT_CACHE_DIR")
    else:
        os.environ["FORKLIFT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def both(cache):
    return load_network_evaluator(), load_onnx_evaluator()


def _enc(net, b: int, seed: int) -> dict[str, np.ndarray]:
    x = parity_inputs(net, b, seed=seed)
    return {k: x[k] for k in ("proprio", "occupancy", "action_mask")}


def test_onnx_evaluator__equals_torch(both):
    tv, ov = both
    enc = _enc(tv.net, 48, seed=3)
    (lt, vt), (lo, vo) = tv.evaluate(enc), ov.evaluate(enc)
    legal = enc["action_mask"] > 0.5
    assert lo.shape == lt.shape and vo.shape == vt.shape and lo.dtype == np.float32
    assert np.abs(lo - lt)[legal].max() < 1e-4 and np.abs(vo - vt).max() < 1e-4
    np.testing.assert_array_equal(lo[~legal], lt[~legal])  # illegal logits exactly masked
    np.testing.assert_array_equal(lo.argmax(1), lt.argmax(1))
    # a missing occupancy crop is the absent modality, as in the torch net
    lo2, vo2 = ov.evaluate({"proprio": enc["proprio"], "action_mask": enc["action_mask"]})
    with torch.no_grad():
        ref = tv.net({"proprio": torch.from_numpy(enc["proprio"]), "action_mask": torch.from_numpy(enc["action_mask"])})
    assert np.abs(vo2 - ref.value.numpy()).max() < 1e-4
    assert np.abs(vo2 - vo).max() > 1e-3  # and it is not the same as with the crop


def test_onnx_evaluator__cached_by_content_and_picklable(both, cache, tmp_path):
    _, ov = both
    graphs = list((cache / "onnx").glob("*.onnx"))
    assert len(graphs) == 1 and cache_dir() == cache
    mtime = graphs[0].stat().st_mtime_ns
    again = load_onnx_evaluator()  # from the cache: no new export
    assert graphs[0].stat().st_mtime_ns == mtime and len(list((cache / "onnx").iterdir())) == 1
    enc = _enc(load_network_evaluator().net, 5, seed=1)
    np.testing.assert_array_equal(again.evaluate(enc)[1], ov.evaluate(enc)[1])
    clone = pickle.loads(pickle.dumps(ov))
    assert isinstance(clone, OnnxEvaluator)
    np.testing.assert_array_equal(clone.evaluate(enc)[0], ov.evaluate(enc)[0])
    # a different weights file (other content) gets its own graph, with its own outputs
    other = tmp_path / "other.safetensors"
    net = load_network_evaluator().net
    with torch.no_grad():
        net.value_head.bias.add_(1.0)
    from learning.checkpoint import save_policy_value

    save_policy_value(net, other)
    ov2 = load_onnx_evaluator(other)
    assert len(list((cache / "onnx").glob("*.onnx"))) == 2
    assert np.abs(ov2.evaluate(enc)[1] - ov.evaluate(enc)[1] - 1.0).max() < 1e-4


def test_onnx_evaluator__missing_weights_is_one_line(cache, tmp_path):
    with pytest.raises(ValueError, match=r"^learning.checkpoint: .*no such file") as e:
        load_onnx_evaluator(tmp_path / "nope.safetensors")
    assert "\n" not in str(e.value)


def test_planner_runtime__onnx_by_default_torch_on_request_and_online(both):
    from agent.cli import prepare
    from agent.planners import controller_factory, online_controller_factory
    from agent.verbs import VERBS

    app = prepare(VERBS["run"], []).app
    assert app.planner.runtime == "onnx"
    assert isinstance(controller_factory(app).keywords["evaluator"], OnnxEvaluator)
    app_t = prepare(VERBS["run"], ["planner.runtime=torch"]).app
    assert isinstance(controller_factory(app_t).keywords["evaluator"], NetworkEvaluator)
    factory, hook = online_controller_factory(prepare(VERBS["run"], ["learning=online"]).app)
    try:
        assert isinstance(factory.keywords["evaluator"], NetworkEvaluator)  # the learner swaps torch weights
    finally:
        hook.close()
    assert DEFAULT_WEIGHTS.is_file()
