"""Bridge-side safety, pure logic (no ROS): watchdog, limits, latched e-stop, message checks.

Everything here works on plain numbers so it is unit-tested without middleware; the bridge
(:mod:`agent.ros.bridge`) feeds it receive times (wall, monotonic s), ROS stamps (s on the
bridge's clock) and the agent's commands, and publishes what :meth:`SafetyGate.output`
returns. The gate does not trust the agent: limits apply to every command.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from agent.ros.config import SafetyConfig
from sim.types import TwistCmd

__all__ = ["Rejected", "RejectCounter", "SafetyGate", "check_array", "check_frame", "check_stamp", "limit_twist"]

ZERO = TwistCmd(0.0, 0.0)


class Rejected(ValueError):
    """A malformed message: ``reason`` is a short stable key (``nan``, ``stale``, ``frame``...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_stamp(stamp_s: float, now_s: float, cfg: SafetyConfig) -> None:
    """Reject non-finite, stale (older than ``max_stamp_age_s``) or future stamps."""
    if not math.isfinite(stamp_s):
        raise Rejected("stamp", f"{stamp_s}")
    if stamp_s < now_s - cfg.max_stamp_age_s:
        raise Rejected("stale", f"stamp {stamp_s:.3f} s older than {cfg.max_stamp_age_s} s at {now_s:.3f}")
    if stamp_s > now_s + cfg.max_future_s:
        raise Rejected("future", f"stamp {stamp_s:.3f} s ahead of {now_s:.3f}")


def check_frame(frame_id: str, expected: str) -> None:
    """Reject a message in another frame (a leading ``/`` of ROS 1 style ids is ignored)."""
    if frame_id.lstrip("/") != expected.lstrip("/"):
        raise Rejected("frame", f"{frame_id!r}, expected {expected!r}")


def check_array(values: object, name: str, *, length: int | None = None, min_len: int = 0,
                max_len: int | None = None, allow_inf: bool = False, allow_nan: bool = False,
                lo: float | None = None) -> np.ndarray:
    """A float64 array of ``values`` checked for length and finiteness (raises :class:`Rejected`)."""
    try:
        a = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise Rejected("type", name) from None
    if length is not None and len(a) != length:
        raise Rejected("length", f"{name}: {len(a)} values, expected {length}")
    if len(a) < min_len or (max_len is not None and len(a) > max_len):
        raise Rejected("length", f"{name}: {len(a)} values, allowed [{min_len}, {max_len}]")
    if not allow_nan and np.isnan(a).any():
        raise Rejected("nan", name)
    if not allow_inf and np.isinf(a).any():
        raise Rejected("inf", name)
    if lo is not None and (a[np.isfinite(a)] < lo).any():
        raise Rejected("range", f"{name} < {lo}")
    return a


def limit_twist(cmd: TwistCmd, prev: TwistCmd, dt: float, cfg: SafetyConfig) -> TwistCmd:
    """Clamp |v|, |w| and their rates of change (over ``dt`` s since ``prev``); NaN -> 0."""
    v = cmd.v if math.isfinite(cmd.v) else 0.0
    w = cmd.w if math.isfinite(cmd.w) else 0.0
    v = min(max(v, -cfg.max_v), cfg.max_v)
    w = min(max(w, -cfg.max_w), cfg.max_w)
    dt = max(dt, 0.0)
    dv, dw = cfg.max_acc * dt, cfg.max_alpha * dt
    v = min(max(v, prev.v - dv), prev.v + dv)
    w = min(max(w, prev.w - dw), prev.w + dw)
    return TwistCmd(float(v), float(w))


@dataclass
class RejectCounter:
    """Rejected messages per ``stream.reason`` (e.g. ``scan.nan``) and accepted per stream."""

    rejected: Counter = field(default_factory=Counter)
    accepted: Counter = field(default_factory=Counter)

    def reject(self, stream: str, reason: str) -> None:
        self.rejected[f"{stream}.{reason}"] += 1

    def accept(self, stream: str) -> None:
        self.accepted[stream] += 1

    def total(self, stream: str | None = None) -> int:
        return sum(n for k, n in self.rejected.items() if stream is None or k.startswith(stream + "."))


@dataclass
class SafetyGate:
    """Per-robot gate between the agent and ``cmd_vel``.

    Times are wall-clock monotonic seconds (``time.monotonic()``), independent of the ROS
    clock: a dead simulator or a frozen ``/clock`` still trips the watchdog.

    Args:
        cfg: limits and timeouts.
        start: construction time; the watchdog counts from here until the first message.
    """

    cfg: SafetyConfig
    start: float = 0.0
    estop: bool = False
    health: str = "ok"
    last_seen: dict[str, float] = field(default_factory=dict)
    last_decision: float | None = None
    decision: TwistCmd = ZERO
    last_out: TwistCmd = ZERO
    last_out_t: float | None = None
    reasons: tuple[str, ...] = ()

    def saw(self, stream: str, t: float) -> None:
        """A valid message of ``stream`` arrived at wall time ``t``."""
        self.last_seen[stream] = t

    def decide(self, cmd: TwistCmd, t: float, health: str = "ok") -> None:
        """The agent's command at wall time ``t``, with the localization health it used."""
        self.decision, self.last_decision, self.health = cmd, t, health

    def trip_estop(self) -> None:
        self.estop = True

    def reset_estop(self) -> None:
        """The explicit reset (the only way the latch clears)."""
        self.estop = False

    def stop_reasons(self, t: float) -> tuple[str, ...]:
        """Why the robot must stand still at wall time ``t`` (empty = may move)."""
        out = []
        if self.estop:
            out.append("estop latched")
        for s in self.cfg.required:
            seen = self.last_seen.get(s, self.start)
            if t - seen > self.cfg.watchdog_s:
                out.append(f"watchdog: no valid {s} for {t - seen:.2f} s")
        since = self.start if self.last_decision is None else self.last_decision
        if t - since > self.cfg.watchdog_s:
            out.append(f"watchdog: no decision for {t - since:.2f} s")
        if self.health == "lost":
            out.append("localization lost")
        return tuple(out)

    def output(self, t: float) -> TwistCmd:
        """The command to publish now: zero with :attr:`reasons` set, or the limited decision."""
        self.reasons = self.stop_reasons(t)
        if self.reasons:
            out = ZERO
        else:
            dt = 0.0 if self.last_out_t is None else t - self.last_out_t
            out = limit_twist(self.decision, self.last_out, dt, self.cfg)
        self.last_out, self.last_out_t = out, t
        return out
