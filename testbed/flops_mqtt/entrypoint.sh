#!/bin/sh
# Like eclipse-mosquitto's entrypoint: the broker starts as root and drops to
# the `mosquitto` user, which must own the data volume.
set -e
mkdir -p /mosquitto/data /mosquitto/log
chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/log
exec "$@"
