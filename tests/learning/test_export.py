"""``forklift export format=onnx``: the shipped network as ONNX, run by onnxruntime.

Oracles: the standalone :class:`PolicyValueNet` (rows with the occupancy present), the
same net given no occupancy at all (rows with ``occupancy_present`` False: a missing
modality is masked, never zero-filled), and torch's own outputs on a dynamic batch.
One export (through the CLI, module scope) is shared by the tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.cli import main
from learning.checkpoint import load_policy_value
from learning.evaluator import DEFAULT_WEIGHTS
from learning.export import INPUT_NAMES, max_abs_diffs, onnx_outputs, parity_inputs, resolve_weights

pytestmark = pytest.mark.timeout(180)
ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(onnx path, CLI stdout) of ``forklift export`` of the shipped weights."""
    out = tmp_path_factory.mktemp("export") / "pv.onnx"
    capture = pytest.MonkeyPatch()
    lines: list[str] = []
    capture.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        code = main(["export", f"checkpoint={DEFAULT_WEIGHTS}", "format=onnx", f"out={out}",
                     "check_batch=64", f"hydra.run.dir={out.parent / 'run'}"])
    finally:
        capture.undo()
    assert code == 0
    return out, "\n".join(lines)


@pytest.fixture(scope="module")
def net():
    torch.set_num_threads(1)
    return load_policy_value(DEFAULT_WEIGHTS)[0]


def test_export__cli_prints_the_bounded_parity(exported):
    out, text = exported
    assert out.is_file() and "max abs diff logits" in text and "onnxruntime vs torch" in text
    spec = json.loads(out.with_suffix(".json").read_text())
    assert spec["parity"]["max_abs_diff_logits"] <= ATOL and spec["parity"]["max_abs_diff_value"] <= ATOL
    assert list(spec["inputs"]) == list(INPUT_NAMES) and list(spec["outputs"]) == ["logits", "value"]
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert spec["weights_sha256"] == meta["sha256"]


def test_export__onnx_equals_the_standalone_network(exported, net):
    out, _ = exported
    x = parity_inputs(net, 48, seed=11)
    x["occupancy_present"][:] = True
    with torch.no_grad():
        ref = net({k: torch.from_numpy(x[k]) for k in ("proprio", "occupancy", "action_mask")})
    got = onnx_outputs(out, x)
    d_logits, d_value = max_abs_diffs((ref.logits.numpy(), ref.value.numpy()), got, x["action_mask"])
    assert d_logits <= ATOL and d_value <= ATOL, (d_logits, d_value)
    assert np.all(got[0][x["action_mask"] <= 0.5] == net.config.illegal_logit)


def test_export__absent_occupancy_rows_equal_the_net_without_that_modality(exported, net):
    out, _ = exported
    x = parity_inputs(net, 16, seed=12)
    x["occupancy_present"][:] = False
    with torch.no_grad():  # the modality missing from the input altogether
        ref = net({k: torch.from_numpy(x[k]) for k in ("proprio", "action_mask")})
    got = onnx_outputs(out, x)
    d_logits, d_value = max_abs_diffs((ref.logits.numpy(), ref.value.numpy()), got, x["action_mask"])
    assert d_logits <= ATOL and d_value <= ATOL, (d_logits, d_value)
    x["occupancy"] = np.ones_like(x["occupancy"])  # masked: its content cannot matter
    again = onnx_outputs(out, x)
    assert np.array_equal(again[0], got[0]) and np.array_equal(again[1], got[1])
    x["occupancy_present"][:] = True  # ... and does once present (the mask is really used)
    assert not np.allclose(onnx_outputs(out, x)[1], got[1], atol=1e-3)


@pytest.mark.parametrize("batch", [1, 5, 300])
def test_export__batch_axis_is_dynamic(exported, net, batch):
    out, _ = exported
    x = parity_inputs(net, batch, seed=batch)
    from learning.export import OnnxPolicyValue

    model = OnnxPolicyValue(net).eval()
    with torch.no_grad():
        ref = model(*(torch.from_numpy(x[k]) for k in INPUT_NAMES))
    got = onnx_outputs(out, x)
    assert got[0].shape == (batch, 7) and got[1].shape == (batch,)
    d_logits, d_value = max_abs_diffs((ref[0].numpy(), ref[1].numpy()), got, x["action_mask"])
    assert d_logits <= ATOL and d_value <= ATOL


def test_export__refuses_pickles_and_missing_paths(tmp_path, capsys):
    pt = tmp_path / "net.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    for ckpt, expected in ((pt, "not a .safetensors file"), (tmp_path / "nope.safetensors", "no such file"),
                           (tmp_path, "no network.safetensors")):
        with pytest.raises(SystemExit) as exc:
            main(["export", f"checkpoint={ckpt}", f"out={tmp_path / 'x.onnx'}",
                  f"hydra.run.dir={tmp_path / 'run'}"])
        _, err = capsys.readouterr()
        assert exc.value.code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ValueError, match="no such file"):
        resolve_weights(tmp_path / "missing")


def test_export__bad_options_are_one_line_exit_2(tmp_path, capsys):
    for args, expected in ((["format=tflite"], "format=tflite"), (["out=x.pt"], "out=x.pt: must end in .onnx"),
                           (["atol=nan"], "atol=nan"), (["check_batch=0"], "check_batch=0")):
        with pytest.raises(SystemExit) as exc:
            main(["export", f"hydra.run.dir={tmp_path / 'run'}", *args])
        _, err = capsys.readouterr()
        assert exc.value.code == 2 and err.count("\n") == 1 and expected in err, err
