#!/usr/bin/env bash
# Install what monitor needs on a fresh Debian machine and start the services it uses.
# Idempotent: each step checks first. Usage: scripts/setup.sh [system|services|venv|node|all]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-tools mosquitto mosquitto-clients
          chromium fonts-noto-cjk)

step_system() {
  local missing=()
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ! command -v psql >/dev/null && [ -z "${DATABASE_URL:-}" ]; then missing+=(postgresql); fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

step_services() {
  if [ -z "${DATABASE_URL:-}" ] && ! port_open 5432; then
    echo "setup: starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -1)" main start || true
    fi
  fi
  if [ -z "${MQTT_URL:-}" ] && ! port_open 1883; then
    echo "setup: starting Mosquitto"
    mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
  fi
}

PY=${PYTHON:-python3.11}
step_venv() {
  local stamp=.venv/.installed
  if [ -f "$stamp" ] && [ "$stamp" -nt requirements.lock ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  echo "setup: creating .venv (torch and ultralytics come from this machine's wheels; a few minutes)"
  command -v "$PY" >/dev/null || PY=python3
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  touch "$stamp"
}

step_node() {
  if [ -f tests/timescale/package-lock.json ] && [ ! -d tests/timescale/node_modules ]; then
    echo "setup: installing the TimescaleDB-in-WebAssembly test server (npm ci)"
    (cd tests/timescale && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ -f wallboard/package-lock.json ] && [ ! -d wallboard/node_modules ]; then
    (cd wallboard && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

case "${1:-all}" in
  system) step_system ;;
  services) step_services ;;
  venv) step_venv ;;
  node) step_node ;;
  all) step_system; step_services; step_venv; step_node ;;
  *) echo "usage: $0 [system|services|venv|node|all]" >&2; exit 2 ;;
esac
