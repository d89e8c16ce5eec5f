#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The VM's health check (health_check in device.yaml): the slot on trial is healthy when it
# mounted the data partition and has its network route, the things the agent needs to serve.
grep -q " /data " /proc/mounts || { echo "health: /data is not mounted" >&2; exit 1; }
ip route | grep -q '^default via 10.0.2.2' || { echo "health: no default route" >&2; exit 1; }
echo "health: rootfs $(cat /etc/fota-release) in slot $FOTA_SLOT is healthy" >&2
