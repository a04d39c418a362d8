#!/usr/bin/env bash
# Run the forklift agent as a ROS node on the robot (docs/DEPLOY.md).
#   scripts/ros_bridge.sh [robot=K | fleet=true] [ros=robot|default|ros1] [key=value ...]
# Defaults here are for a real robot: ros=robot (other hosts may talk to it, wall-clock
# stamps); pass ros=default for simulation on one host. ROS_DOMAIN_ID is taken from the
# environment unless ros.domain_id= is given. Stops on SIGINT/SIGTERM with zero velocity.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # one torch thread: 190 ms -> ms per forward on a shared CPU
args=("$@")
case " ${args[*]-} " in *" ros="*) ;; *) args=("ros=robot" "${args[@]}");; esac
exec python -m agent.cli bridge "${args[@]}"
