#!/usr/bin/env bash
# Run the simulated warehouse as ROS robots + WMS on this host (docs/DEPLOY.md).
#   scripts/ros_sim_robot.sh [n_robots=N] [ros.real_time_factor=0.5] [ros.domain_id=D] [record=bag] ...
# Simulation defaults (ros=default): discovery on this host only, Fast DDS on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec python -m agent.cli sim-robot "$@"
