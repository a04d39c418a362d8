"""Multi-sensor localization of one robot: EKF / UKF (filterpy) or dead reckoning.

One :class:`Localizer` per robot; feed it every :class:`~sim.types.SensorFrame` of that
robot in time order and read the returned :class:`~sim.types.Pose`::

    loc = Localizer(layout, LocalizerConfig(kind="ekf"), initial_pose)
    for frame in frames:                # 20 Hz
        pose = loc.update(frame)        # x, y, yaw, cov [3, 3], health, stamp
    loc.stats                           # accepted / rejected / malformed / ... counters

Filter (state in :mod:`perception.motion`): [x, y, yaw, v, w, gyro_bias, wheel_scale,
wheel_asym]. Per frame:

1. velocity half-step: (v, w, biases) random-walk; with an IMU, v is driven by the
   forward acceleration (``v += a dt``, accelerometer noise);
2. odometry ``(k v, k w + c v)`` and gyro ``w + gyro_bias`` in one gated update;
   odometry noise comes from a differential-drive wheel model (per-wheel relative +
   absolute speed noise, track ``odom_track_width``); the odometry pair is gated
   jointly (a slipping wheel corrupts both), the gyro alone;
3. arc propagation of the pose with the fresh (v, w): prediction is driven by odometry
   and IMU. ``odom_velocity="mean"`` (default; the simulator, whose velocity motors
   hold each tick's speed) reads odometry and gyro as the period's mean speeds; ``"end"``
   (encoders reporting the speed at the stamp) moves the pose with the mean of the
   previous and the new (v, w);
4. exteroceptive updates: floor fiducial (direct pose), lidar scan match against the
   map (pose with Hessian covariance, every ``lidar_period_s``), UWB ranges (3D range
   model, anchor and tag heights).

``kind="dead_reckoning"`` runs the same filter on odometry and IMU only (the baseline).
With ``kind="ukf"`` the same models run through filterpy's UKF (:mod:`perception.ukf`).

Robustness (what robot_localization users expect):

* **Gating before the update.** Every measurement's innovation and Mahalanobis distance
  are computed from the prior (filterpy computes them only inside ``update``); vector
  sensors whose components are independent (odometry, gyro, UWB ranges) are gated per
  component, pose measurements jointly (chi-square quantiles ``gate_*``). Rejections
  are counted per sensor.
* **Malformed readings** (NaN, wrong lengths, negative ranges, unknown anchor/marker
  ids) are dropped and counted in ``stats.malformed``; they never raise.
* **Late data: buffer-and-replay.** The last ``history_s`` seconds of frames are kept
  with the filter state before each; a frame older than the newest is inserted in
  order and the later frames are re-filtered (``stats.late_replayed``). Older than the
  history, or a duplicate stamp: dropped (``stats.late_dropped``). ``history_s=0``
  turns replay off (reject-with-count).
* **Time-outs.** A sensor seen before and silent for longer than its time-out is
  reported in ``stats.timed_out`` (counted on each transition) and makes health
  "degraded" (fiducials are intermittent by nature and have no time-out).
* **Health**: "lost" when the position std exceeds ``lost_pos_std`` or the yaw std
  ``lost_yaw_std`` or when a trusted sensor keeps disagreeing (``kidnap_rejections``
  consecutive good lidar matches or UWB majorities rejected, or ``kidnap_fiducials``
  fiducial readings in a row: kidnapping / divergence); "degraded" above
  ``degraded_pos_std`` / ``degraded_yaw_std``, after ``degraded_rejections``
  consecutive rejections of one sensor, or with a timed-out sensor; else "ok".
* **Bounded recovery**: a good pose measurement rejected twice in a row with a small
  innovation (< ``recover_max_offset`` / ``recover_max_yaw``) inflates P along the
  innovation and is applied (the filter was overconfident, e.g. after wheel slip).
* **Collisions**: an accelerometer norm above ``impact_accel`` inflates the yaw-rate
  process noise for that period, adds ``impact_pos_sigma`` / ``impact_yaw_sigma`` of
  pose noise (sampled inertial data miss part of a collision's motion) and skips the
  odometry (skidding / spinning wheels); the accelerometer carries v.
* **Gyro lock-out breaker**: after ``gyro_relock``
  consecutive gyro rejections the yaw-rate variance is reopened by the last innovation,
  so a wrong w state can never shut out the gyro for good.
* **Relocalization** when lost: a floor fiducial gives the full pose, checked against
  the lidar (scan fit) and UWB (range residuals) when present; otherwise robust UWB
  multilateration (:mod:`perception.relocalization`) plus a lidar yaw search
  (:func:`perception.scan_match.search_yaw`). Without lidar the yaw stays unknown
  (large variance) until a fiducial is read.
* **Numerics.** P is symmetrised after every step, checked by Cholesky, repaired by
  eigenvalue clamping; a non-finite state or a failed linear algebra step restores the
  last good estimate with inflated covariance (``stats.numerical_resets``). NaN never
  leaves :meth:`Localizer.update`.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
from scipy.stats import chi2

from perception import motion as mm
from perception.ekf import EkfBackend, FilterBackend, repair_covariance
from perception.localization_config import (
    SENSOR_NAMES,
    Counters,
    FilterEstimate,
    LocalizerConfig,
    LocalizerStats,
    Track,
    initial_state,
    process_noise,
)
from perception.readings import check_exteroceptive, check_imu, check_odom
from perception.relocalization import find_candidate
from perception.scan_match import MapField, match_scan, scan_points
from perception.ukf import UkfBackend
from sim.layout import Layout
from sim.types import Health, Pose, SensorFrame

_ODOM_ROWS = {2: np.array([True, True]), 3: np.array([True, True, False])}
_MOTION_ROWS = {
    (True, True): (slice(0, 3), slice(0, 3)),
    (True, False): (slice(0, 2), slice(0, 2)),
    (False, True): (slice(2, 3), slice(2, 3)),
}
_NUMERIC_ERRORS = (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError)


class Localizer:
    """Pose filter of one robot (see the module docstring).

    Args:
        layout: the warehouse (map for scan matching, fiducial and anchor positions).
        config: typed configuration; ``kind`` selects "ekf", "ukf" or "dead_reckoning".
        initial_pose: start pose; its ``cov`` (zeros = use the config's init stds) and
            ``stamp`` (time of the pose; the first frame propagates from it).
    """

    def __init__(
        self,
        layout: Layout,
        config: LocalizerConfig | None = None,
        initial_pose: Pose | None = None,
    ) -> None:
        self.layout = layout
        self.cfg = config or LocalizerConfig()
        pose0 = initial_pose or Pose(x=0.0, y=0.0, yaw=0.0)
        self._field = (
            MapField.of(layout, self.cfg.field_resolution)
            if self.cfg.kind != "dead_reckoning"
            else None
        )
        self._gates = {
            s: {m: float(chi2.ppf(getattr(self.cfg, f"gate_{s}"), m)) for m in (1, 2, 3)}
            for s in SENSOR_NAMES
        }
        self._timeouts = {
            "odom": self.cfg.timeout_odom,
            "imu": self.cfg.timeout_imu,
            "lidar": self.cfg.timeout_lidar,
            "uwb": self.cfg.timeout_uwb,
        }
        self._motion_models = {
            (o, g): mm.odom_gyro_model(o, g) for o in (True, False) for g in (True, False) if o or g
        }
        g_o, g_i = self._gates["odom"][1], self._gates["imu"][1]
        self._motion_gates = {
            (True, True): np.array([g_o, g_o, g_i]),
            (True, False): np.array([g_o, g_o]),
            (False, True): np.array([g_i]),
        }
        self._fid_model, self._lidar_model = mm.pose_model("fiducial"), mm.pose_model("lidar")
        self._uwb_models: dict[bytes, mm.MeasurementModel] = {}
        self._c = Counters()
        self._replaying = False
        self._history: deque[tuple[float, SensorFrame, Track]] = deque()
        x0, P0 = initial_state(self.cfg, pose0)
        self._backend = self._make_backend(x0, P0)
        self._t = Track(x=x0, P=P0, stamp=float(pose0.stamp), good_x=x0.copy(), good_P=P0.copy())
        self._pose = self._make_pose()

    # ---- public API -----------------------------------------------------------------------

    def update(self, frame: SensorFrame) -> Pose:
        """Filter one frame; returns the pose at ``frame.stamp`` (never NaN).

        Frames older than the newest processed one are replayed in order when within
        ``history_s``, else dropped; both are counted.
        """
        try:
            stamp = float(frame.stamp)
        except (TypeError, ValueError, AttributeError):
            stamp = float("nan")
        if not np.isfinite(stamp):
            self._c.malformed["frame"] += 1
            return self._pose
        self._c.frames += 1
        if self._t.started and stamp <= self._t.stamp:
            self._late(stamp, frame)
            return self._pose
        self._history.append((stamp, frame, self._snapshot()))
        self._process(frame, stamp)
        self._trim_history()
        return self._pose

    @property
    def pose(self) -> Pose:
        """Latest pose estimate."""
        return self._pose

    @property
    def estimate(self) -> FilterEstimate:
        """Full state and covariance (copies)."""
        return FilterEstimate(x=self._backend.x, P=self._backend.P, stamp=self._t.stamp)

    @property
    def stats(self) -> LocalizerStats:
        """Snapshot of the counters."""
        c = self._c
        return LocalizerStats(
            frames=c.frames,
            accepted=MappingProxyType(dict(c.accepted)),
            rejected=MappingProxyType(dict(c.rejected)),
            malformed=MappingProxyType(dict(c.malformed)),
            timeouts=MappingProxyType(dict(c.timeouts)),
            timed_out=frozenset(self._t.timed_out),
            late_replayed=c.late_replayed,
            late_dropped=c.late_dropped,
            numerical_resets=c.numerical_resets,
            covariance_repairs=c.covariance_repairs,
            relocalizations=c.relocalizations,
            kidnaps_detected=c.kidnaps_detected,
            recoveries=c.recoveries,
        )

    def reset(self, pose: Pose) -> None:
        """Re-initialise the filter at ``pose`` (operator or supervisor override); keeps stats."""
        x0, P0 = initial_state(self.cfg, pose)
        self._backend.set_state(x0, P0)
        self._t = Track(x=x0, P=P0, stamp=float(pose.stamp), good_x=x0.copy(), good_P=P0.copy())
        self._history.clear()
        self._pose = self._make_pose()

    # ---- construction ----------------------------------------------------------------------

    def _make_backend(self, x0: np.ndarray, P0: np.ndarray) -> FilterBackend:
        if self.cfg.kind == "ukf":
            return UkfBackend(
                x0, P0, alpha=self.cfg.ukf_alpha, beta=self.cfg.ukf_beta, kappa=self.cfg.ukf_kappa
            )
        return EkfBackend(x0, P0)

    # ---- late data -------------------------------------------------------------------------

    def _snapshot(self) -> Track:
        t = copy.copy(self._t)
        t.x, t.P = self._backend.x, self._backend.P
        t.last_seen, t.timed_out, t.consec = dict(t.last_seen), set(t.timed_out), dict(t.consec)
        return t

    def _restore(self, snap: Track) -> None:
        self._t = copy.copy(snap)
        self._t.last_seen, self._t.timed_out = dict(snap.last_seen), set(snap.timed_out)
        self._t.consec = dict(snap.consec)
        self._backend.set_state(snap.x, snap.P)

    def _late(self, stamp: float, frame: SensorFrame) -> None:
        hist = self._history
        if (
            not hist
            or self.cfg.history_s <= 0
            or stamp < hist[0][0]
            or any(s == stamp for s, _, _ in hist)
        ):
            self._c.late_dropped += 1
            return
        i = next(k for k, (s, _, _) in enumerate(hist) if s > stamp)
        entries = list(hist)
        self._restore(entries[i][2])
        new = [(stamp, frame, self._snapshot())]
        self._process(frame, stamp)  # new data: counted
        self._replaying = True  # re-filtering already counted frames: not counted again
        try:
            for s, f, _ in entries[i:]:
                new.append((s, f, self._snapshot()))
                self._process(f, s)
        finally:
            self._replaying = False
        self._history = deque(entries[:i] + new)
        self._c.late_replayed += 1

    def _trim_history(self) -> None:
        newest = self._history[-1][0]
        while self._history and self._history[0][0] < newest - self.cfg.history_s:
            self._history.popleft()

    # ---- one frame --------------------------------------------------------------------------

    def _count(self, table: dict[str, int], sensor: str, n: int = 1) -> None:
        if not self._replaying:
            table[sensor] += n

    def _process(self, frame: SensorFrame, stamp: float) -> None:
        t = self._t
        dt = min(max(stamp - t.stamp, 0.0), self.cfg.max_dt)
        t.stamp, t.started = stamp, True
        try:
            self._predict(frame, dt)
            if self.cfg.kind != "dead_reckoning":
                self._exteroceptive(frame, stamp)
            self._sanitise()
        except _NUMERIC_ERRORS:
            self._numerical_reset()
        self._update_timeouts(stamp)
        t = self._t
        t.health = self._health()
        if t.health != "lost" and not t.kidnapped:
            t.good_x, t.good_P = self._backend.x, self._backend.P
        self._pose = self._make_pose()

    def _seen(self, sensor: str) -> None:
        self._t.last_seen[sensor] = self._t.stamp

    def _predict(self, frame: SensorFrame, dt: float) -> None:
        """Random-walk half-step, odometry + gyro update (gated), pose propagation."""
        cfg, b = self.cfg, self._backend
        q_vel, q_pose = process_noise(self.cfg, dt)
        z_odom = z_gyro = None
        if frame.odom is not None:
            z_odom = check_odom(frame.odom)
            self._count(self._c.malformed, "odom") if z_odom is None else self._seen("odom")
        if frame.imu is not None:
            z_gyro = check_imu(frame.imu)
            self._count(self._c.malformed, "imu") if z_gyro is None else self._seen("imu")
        v0, w0 = float(b.xv[mm.IV]), float(b.xv[mm.IW])
        impact = False
        if z_gyro is not None and cfg.use_accel:
            q_vel, impact = self._imu_aided(frame.imu.accel, dt, q_vel)
        if impact and z_odom is not None:  # skidding / spinning wheels: odometry skipped
            self._count(self._c.rejected, "odom", 2)
            z_odom = None
        if z_gyro is not None and self._t.consec.get("imu", 0) >= cfg.gyro_relock:
            # gyro lock-out breaker: the yaw-rate state, not the gyro, is wrong
            q_vel = q_vel.copy()
            q_vel[mm.IW, mm.IW] += self._t.gyro_innov2
        b.add_noise(q_vel)
        if impact:
            self._t.impact_until = self._t.stamp + cfg.impact_hold_s
        extra = np.zeros(3)  # extra (x, y, yaw) std of this period's motion
        if z_odom is not None or z_gyro is not None:
            aided = z_gyro is not None and cfg.use_accel
            extra = self._motion_update(z_odom, z_gyro, 0.0 if aided else dt)
        if dt > 0:
            dv = dw = 0.0
            if cfg.odom_velocity == "end":  # move with the period's mean speeds
                dv, dw = 0.5 * (float(b.xv[mm.IV]) - v0), 0.5 * (float(b.xv[mm.IW]) - w0)
            if self._t.stamp <= self._t.impact_until:
                # after a collision the body may slide sideways: the unicycle model is off
                hold = [cfg.impact_pos_sigma, cfg.impact_pos_sigma, cfg.impact_yaw_sigma]
                extra = np.maximum(extra, hold)
            if extra.any():
                q_pose = q_pose.copy()
                q_pose[:3, :3] += np.diag(extra**2)
            b.propagate(dt, q_pose, dv, dw)
        b.normalise()

    def _imu_aided(self, acc: np.ndarray, dt: float, q_vel: np.ndarray) -> tuple[np.ndarray, bool]:
        """IMU-aided velocity half-step: ``v += a_fwd dt`` with accelerometer noise (far
        tighter than the blind random walk, so a slipping wheel fails the odometry gate).
        Returns the process noise and whether the period had an impact (collision)."""
        cfg = self.cfg
        self._backend.xv[mm.IV] += float(acc[0]) * dt
        q_vel = q_vel.copy()
        q_vel[mm.IV, mm.IV] = (cfg.imu_accel_sigma * dt) ** 2 + cfg.aided_accel_psd * dt
        impact = math.hypot(float(acc[0]), float(acc[1])) > cfg.impact_accel
        if impact:  # the body may spin within one period: let the gyro in
            q_vel[mm.IW, mm.IW] += cfg.impact_w_sigma**2
        return q_vel, impact

    def _motion_update(
        self, z_odom: np.ndarray | None, z_gyro: np.ndarray | None, dt: float
    ) -> np.ndarray:
        """One gated update with odometry (v, w) and/or gyro; counts per sensor.

        Args:
            z_odom, z_gyro: validated readings or None.
            dt: period (s) over which a gated-out odometry's disagreement becomes motion
                uncertainty; 0 when the accelerometer carries v (then a spinning or slipping
                wheel says nothing about the body's motion).

        Returns:
            [3] extra (x, y, yaw) std (m, m, rad) for this period's propagation: when the
            odometry is gated out, its disagreement with the state (|dv| dt, |dw| dt) is
            how wrong the predicted motion may be.
        """
        cfg = self.cfg
        has = (z_odom is not None, z_gyro is not None)
        R = np.zeros((3, 3))
        if z_odom is not None:
            R[:2, :2] = mm.odom_covariance(
                z_odom, cfg.odom_track_width, cfg.odom_wheel_sigma_rel, cfg.odom_wheel_sigma_abs
            )
        R[2, 2] = cfg.gyro_sigma**2
        r_rows, r_cols = _MOTION_ROWS[has]
        z = np.concatenate([v for v in (z_odom, z_gyro) if v is not None])
        model, gates = self._motion_models[has], self._motion_gates[has]
        ok = self._gated(None, model, z, R[r_rows, r_cols], joint=False, gates=gates)
        y = self._last_innovation.y
        extra = np.zeros(3)
        if z_odom is not None:
            self._count(self._c.accepted, "odom", int(ok[0]) + int(ok[1]))
            self._count(self._c.rejected, "odom", 2 - int(ok[0]) - int(ok[1]))
            if not ok[0]:
                extra = np.array([abs(y[0]) * dt, abs(y[0]) * dt, abs(y[1]) * dt])
        if z_gyro is not None:
            self._count(self._c.accepted, "imu", int(ok[-1]))
            self._count(self._c.rejected, "imu", 1 - int(ok[-1]))
            self._t.consec["imu"] = 0 if ok[-1] else self._t.consec.get("imu", 0) + 1
            self._t.gyro_innov2 = float(y[-1]) ** 2
        return extra

    def _gated(
        self,
        sensor: str | None,
        model: mm.MeasurementModel,
        z: np.ndarray,
        R: np.ndarray,
        *,
        joint: bool,
        gates: np.ndarray | None = None,
        recover: bool = False,
    ) -> np.ndarray:
        """Gate ``z`` [m] against the prior, then update with what passed.

        Args:
            sensor: counter and gate name; None = the odometry/gyro triple (counted by the
                caller; rows 0-1 (odometry v, w) gated jointly, row 2 (gyro) alone).
            joint: one chi-square test over all components (else each component alone).
            gates: per-row thresholds for ``sensor=None``.
            recover: a pose measurement that may trigger the bounded recovery (see
                :meth:`_recover`) when rejected.

        Returns:
            [m] bool, components accepted.
        """
        inn = self._backend.innovation(model, z, R)
        self._last_innovation = inn
        if sensor is None:
            ok = inn.component_d2() <= gates
            if model.dim >= 2:  # odometry pair: a slipping wheel corrupts both
                ok[:2] = inn.mahalanobis2(_ODOM_ROWS[model.dim]) <= gates[0]
        elif joint:
            ok = np.full(model.dim, inn.mahalanobis2() <= self._gates[sensor][model.dim])
        else:
            ok = inn.component_d2() <= self._gates[sensor][1]
        if recover and not ok[0]:
            inn = self._recover(sensor, model, inn)
            ok[:] = inn is not None
        elif recover:
            self._t.recover_count = 0
        n_ok = int(ok.sum())
        if sensor is not None:
            self._count(self._c.accepted, sensor, n_ok)
            self._count(self._c.rejected, sensor, model.dim - n_ok)
        if n_ok:
            self._backend.update(inn, None if n_ok == model.dim else ok)
            self._backend.normalise()
        return ok

    def _recover(self, sensor: str, model: mm.MeasurementModel, inn):
        """Bounded recovery from an overconfident prior (e.g. after undetected wheel slip).

        A good pose measurement (fiducial, converged scan match) rejected on
        ``recover_after`` consecutive frames with a small innovation (below
        ``recover_max_offset`` / ``recover_max_yaw``) means the filter, not the sensor,
        is wrong: P gains the rank-1 term ``y y^T`` along the innovation (which brings
        the Mahalanobis distance below 1) and the measurement is applied. Large
        innovations never do this; they feed the kidnap detector instead.

        Returns:
            The innovation recomputed with the inflated P, or None (still rejected).
        """
        cfg, t = self.cfg, self._t
        y = inn.y
        if math.hypot(y[0], y[1]) > cfg.recover_max_offset or abs(y[2]) > cfg.recover_max_yaw:
            t.recover_count = 0
            return None
        t.recover_count += 1
        if t.recover_count < cfg.recover_after:
            return None
        t.recover_count = 0
        self._backend.Pv[:3, :3] += np.outer(y, y)
        if not self._replaying:
            self._c.recoveries += 1
        return self._backend.innovation(model, inn.z, inn.R)

    # ---- exteroceptive sensors ---------------------------------------------------------------

    def _exteroceptive(self, frame: SensorFrame, stamp: float) -> None:
        fid, uwb, scan = self._checked(frame)
        pos_std, yaw_std = self._stds()
        lost_pos = self._t.kidnapped or pos_std > self.cfg.lost_pos_std
        if (lost_pos or yaw_std > self.cfg.lost_yaw_std) and self._relocalize(
            fid, uwb, scan, lost_pos
        ):
            return  # this frame's measurements made the fix; do not use them twice
        if self._t.kidnapped:
            return  # wait for a relocalization; measurements would fight a wrong prior
        res: dict[str, bool | None] = {}
        if fid is not None:
            res["fiducial"] = bool(
                self._gated("fiducial", self._fid_model, fid[0], fid[1], joint=True, recover=True)[
                    0
                ]
            )
        if scan is not None and stamp - self._t.last_lidar >= self.cfg.lidar_period_s - 1e-9:
            res["lidar"] = self._lidar_update(scan, stamp)
        if uwb is not None:
            ids, ranges = uwb
            ok = self._gated(
                "uwb",
                self._uwb_model(ids),
                ranges,
                np.eye(len(ids)) * self.cfg.uwb_sigma**2,
                joint=False,
            )
            res["uwb"] = 2 * int(ok.sum()) >= len(ok)  # a majority of the ranges agrees
        self._track_rejections(res)

    def _checked(self, frame: SensorFrame) -> tuple:
        """Validated (fiducial, uwb, lidar) of a frame (None when absent or malformed);
        counts malformed readings and marks the present ones as seen."""
        out = []
        for name, (value, n_bad) in zip(
            ("fiducial", "uwb", "lidar"), check_exteroceptive(frame, self.layout, self.cfg)
        ):
            if n_bad:
                self._count(self._c.malformed, name, n_bad)
            if value is not None and name != "fiducial":
                self._seen(name)
            out.append(value)
        return tuple(out)

    def _uwb_model(self, ids: np.ndarray) -> mm.MeasurementModel:
        key = ids.tobytes()
        model = self._uwb_models.get(key)
        if model is None:
            model = mm.uwb_model(self.layout.uwb_anchors[ids], self.cfg.uwb_tag_height)
            if len(self._uwb_models) < 64:
                self._uwb_models[key] = model
        return model

    def _lidar_update(self, scan, stamp: float) -> bool | None:
        """Scan match from the prior and gated pose update.

        Returns:
            True accepted, False a good match rejected by the gate (the filter and the map
            disagree), None not attempted or a poor fit (no evidence either way).
        """
        cfg = self.cfg
        pos_std, yaw_std = self._stds()
        if pos_std > cfg.lidar_max_prior_pos_std or yaw_std > cfg.lidar_max_prior_yaw_std:
            return None
        pts = scan_points(scan, cfg.scan, cfg.lidar_offset)
        if len(pts) < cfg.scan.min_points:
            return None
        self._t.last_lidar = stamp
        m = match_scan(
            self._field,
            pts,
            self._backend.x[:3],
            cfg.scan,
            # wide basin right after a rejection, so a bounded recovery can still engage
            outlier=max(
                cfg.scan.outlier, 3.0 * pos_std, 0.5 if self._t.consec.get("lidar") else 0.0
            ),
        )
        if m is None or m.fitness < cfg.lidar_min_fitness:
            self._count(self._c.rejected, "lidar")
            return None
        good = m.converged and m.fitness >= cfg.recover_min_fitness
        return bool(
            self._gated("lidar", self._lidar_model, m.pose, m.cov, joint=True, recover=good)[0]
        )

    def _track_rejections(self, results: Mapping[str, bool | None]) -> None:
        """Per-sensor consecutive rejections; persistent disagreement of a trusted sensor
        (lidar or UWB for ``kidnap_rejections`` frames, ``kidnap_fiducials`` fiducial
        readings in a row) means the estimate is wrong: flag kidnapping, open P."""
        t, cfg = self._t, self.cfg
        for sensor, ok in results.items():
            if ok is not None:
                t.consec[sensor] = 0 if ok else t.consec.get(sensor, 0) + 1
        wrong = (
            t.consec.get("lidar", 0) >= cfg.kidnap_rejections
            or t.consec.get("uwb", 0) >= cfg.kidnap_rejections
            or t.consec.get("fiducial", 0) >= cfg.kidnap_fiducials
        )
        if wrong and not t.kidnapped:
            t.kidnapped = True
            if not self._replaying:
                self._c.kidnaps_detected += 1
            x, P = self._backend.x, self._backend.P
            s = max(1.0, 2.0 * cfg.lost_pos_std / max(math.sqrt(P[0, 0]), math.sqrt(P[1, 1]), 1e-9))
            D = np.ones(mm.N_STATE)
            D[:2] = s
            self._backend.set_state(x, P * np.outer(D, D))

    # ---- relocalization -------------------------------------------------------------------

    def _relocalize(self, fid, uwb, scan, lost_pos: bool) -> bool:
        """Try a global fix; on success reset the pose block of the state. Returns success."""
        cand = find_candidate(
            self._field,
            self.layout,
            self.cfg,
            fid,
            uwb,
            scan,
            self._backend.x[:3],
            lost_pos=lost_pos,
        )
        if cand is None:
            return False
        pose, cov = cand
        x, P = self._backend.x, self._backend.P
        x[:3] = pose
        P[:3, :] = 0.0
        P[:, :3] = 0.0
        P[:3, :3] = cov
        self._backend.set_state(x, P)
        self._t.kidnapped = False
        self._t.consec = {}
        if not self._replaying:
            self._c.relocalizations += 1
        return True

    # ---- numerics, time-outs, health --------------------------------------------------------

    def _sanitise(self) -> None:
        """Finite check, then symmetrise / cap / repair P (:func:`repair_covariance`)."""
        b = self._backend
        x, P = b.xv, b.Pv
        if not (np.isfinite(x).all() and np.isfinite(P).all()):
            raise FloatingPointError("non-finite state")
        P, repaired = repair_covariance(P)
        if repaired and not self._replaying:
            self._c.covariance_repairs += 1
        b.set_state(x.copy(), P)

    def _stds(self) -> tuple[float, float]:
        """(std along the worst position axis (m), yaw std (rad))."""
        return mm.position_std(self._backend.Pv), math.sqrt(max(float(self._backend.Pv[2, 2]), 0.0))

    def _numerical_reset(self) -> None:
        t = self._t
        x = t.good_x if t.good_x is not None else initial_state(self.cfg, self._pose)[0]
        P = t.good_P if t.good_P is not None else initial_state(self.cfg, self._pose)[1]
        self._backend.set_state(
            x, 0.5 * (P + P.T) * 4.0 + np.diag([1e-4, 1e-4, 1e-4, 1e-2, 1e-2, 0, 0, 0])
        )
        if not self._replaying:
            self._c.numerical_resets += 1

    def _update_timeouts(self, stamp: float) -> None:
        t = self._t
        for s, limit in self._timeouts.items():
            last = t.last_seen.get(s)
            out = last is not None and stamp - last > limit
            if out and s not in t.timed_out:
                t.timed_out.add(s)
                self._count(self._c.timeouts, s)
            elif not out:
                t.timed_out.discard(s)

    def _health(self) -> Health:
        cfg, t = self.cfg, self._t
        pos_std, yaw_std = self._stds()
        if t.kidnapped or pos_std > cfg.lost_pos_std or yaw_std > cfg.lost_yaw_std:
            return "lost"
        if (
            pos_std > cfg.degraded_pos_std
            or yaw_std > cfg.degraded_yaw_std
            or max(t.consec.values(), default=0) >= cfg.degraded_rejections
            or t.timed_out
        ):
            return "degraded"
        return "ok"

    def _make_pose(self) -> Pose:
        x, P = self._backend.xv, self._backend.Pv
        if not (np.all(np.isfinite(x[:3])) and np.all(np.isfinite(P[:3, :3]))):
            x, P = self._t.good_x, self._t.good_P  # defensive: never hand out NaN
        return Pose(
            x=float(x[0]),
            y=float(x[1]),
            yaw=mm.wrap_scalar(float(x[2])),
            cov=P[:3, :3].copy(),
            health=self._t.health,
            stamp=float(self._t.stamp),
        )
