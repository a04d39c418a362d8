"""Pure bridge safety logic (agent.ros.safety): watchdog, limits, latched e-stop, message checks."""

import math

import numpy as np
import pytest

from agent.ros.config import FramesConfig, SafetyConfig
from agent.ros.safety import Rejected, SafetyGate, check_array, check_stamp, limit_twist
from sim.types import TwistCmd

CFG = SafetyConfig()


def _fresh_gate(t: float = 0.0) -> SafetyGate:
    g = SafetyGate(CFG, start=t)
    for s in CFG.required:
        g.saw(s, t)
    return g


def test_watchdog_stops_when_scan_goes_silent():
    g = _fresh_gate()
    g.decide(TwistCmd(0.5, 0.0), 0.0)
    g.saw("odom", 0.6)
    g.decide(TwistCmd(0.5, 0.0), 0.6)
    assert g.output(0.6) == TwistCmd(0.0, 0.0)
    assert any("scan" in r for r in g.reasons)


def test_estop_latches_until_reset():
    g = _fresh_gate()
    g.trip_estop()
    for t in (0.05, 0.1, 0.15):
        for s in CFG.required:
            g.saw(s, t)
        g.decide(TwistCmd(1.0, 0.0), t)
        assert g.output(t) == TwistCmd(0.0, 0.0)
        assert "estop latched" in g.reasons
    g.reset_estop()
    g.decide(TwistCmd(1.0, 0.0), 0.2)
    out = g.output(0.2)
    assert out.v > 0 and not g.reasons


def test_never_moves_on_lost_localization():
    g = _fresh_gate()
    g.decide(TwistCmd(1.0, 0.0), 0.1, health="lost")
    assert g.output(0.1) == TwistCmd(0.0, 0.0) and "localization lost" in g.reasons


def test_limits_velocity_and_acceleration_whatever_the_agent_asks():
    out = limit_twist(TwistCmd(100.0, -100.0), TwistCmd(0.0, 0.0), 0.05, CFG)
    assert out.v == pytest.approx(CFG.max_acc * 0.05) and out.w == pytest.approx(-CFG.max_alpha * 0.05)
    out = limit_twist(TwistCmd(100.0, 100.0), TwistCmd(CFG.max_v, CFG.max_w), 1.0, CFG)
    assert out == TwistCmd(CFG.max_v, CFG.max_w)
    assert limit_twist(TwistCmd(math.nan, math.inf), TwistCmd(0, 0), 0.05, CFG) == TwistCmd(0.0, 0.0)


def test_stamp_and_array_checks_reject_malformed():
    check_stamp(10.0, 10.05, CFG)
    for stamp, reason in ((9.0, "stale"), (11.0, "future"), (math.nan, "stamp")):
        with pytest.raises(Rejected) as e:
            check_stamp(stamp, 10.0, CFG)
        assert e.value.reason == reason
    with pytest.raises(Rejected) as e:
        check_array([1.0, math.nan], "x")
    assert e.value.reason == "nan"
    with pytest.raises(Rejected) as e:
        check_array([1.0, 2.0, 3.0], "x", length=4)
    assert e.value.reason == "length"
    assert np.allclose(check_array([1, 2], "x", length=2), [1, 2])
    assert FramesConfig().laser == "base_scan"
