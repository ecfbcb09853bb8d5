#!/bin/sh
# Write docker/mosquitto/passwd: the centre and one account per station of a city file.
#   MQTT_CENTRE_PASSWORD=... MQTT_DEVICE_PASSWORD_PREFIX=... docker/mosquitto/make-passwd.sh docker/city.yaml
# Each station's devices log in as the station id with "$MQTT_DEVICE_PASSWORD_PREFIX<station id>".
set -eu
city=${1:-docker/city.yaml}
out=$(dirname "$0")/passwd
: "${MQTT_CENTRE_PASSWORD:?set MQTT_CENTRE_PASSWORD}"
: "${MQTT_DEVICE_PASSWORD_PREFIX:?set MQTT_DEVICE_PASSWORD_PREFIX}"
rm -f "$out"
touch "$out"
mosquitto_passwd -b "$out" centre "$MQTT_CENTRE_PASSWORD"
python3 - "$city" <<'PY' | while read -r site; do mosquitto_passwd -b "$out" "$site" "${MQTT_DEVICE_PASSWORD_PREFIX}${site}"; done
import sys, yaml
for s in yaml.safe_load(open(sys.argv[1]))["sites"]:
    if s.get("kind") == "station":
        print(s["id"])
PY
chmod 600 "$out"
echo "wrote $out"
