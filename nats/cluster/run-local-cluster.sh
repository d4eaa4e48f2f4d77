#!/usr/bin/env bash
# Run the 3-node JetStream cluster of nats/cluster/nats-{1,2,3}.conf on this host, without Docker.
#
# Usage (from anywhere):
#   nats/cluster/run-local-cluster.sh [start]   start the three nodes in the background and wait
#                                               until each answers /healthz (the default)
#   nats/cluster/run-local-cluster.sh status    show each node's pid and /healthz answer
#   nats/cluster/run-local-cluster.sh stop      stop the nodes this script started (SIGTERM)
#   nats/cluster/run-local-cluster.sh clean     stop, then delete their JetStream data
#
# Then point the receiver at all three nodes:
#   NATS_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 \
#   NATS_STREAM_REPLICAS=3 cargo run -- serve
#
# Ports: clients 4222-4224, routes 6222-6224, monitoring 8222-8224, all on 127.0.0.1.
# Data, logs and pid files: target/nats-cluster/nats-N/, target/nats-cluster/nats-N.{log,pid}.
# nats-server: $NATS_SERVER_BIN, else nats-server on PATH when it is 2.10 or newer, else
# target/nats-server/nats-server (provisioned by nats/provision-nats-server.sh when missing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run="$root/target/nats-cluster"
nodes=(1 2 3)

client_port() { echo $((4221 + $1)); }
http_port() { echo $((8221 + $1)); }

find_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ]; then
    echo "$NATS_SERVER_BIN"
    return
  fi
  if command -v nats-server >/dev/null 2>&1; then
    local v
    v="$(nats-server --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
    if [ -n "$v" ] && { set -- $v; [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }; }; then
      command -v nats-server
      return
    fi
  fi
  "$root/nats/provision-nats-server.sh"
}

# Prints the HTTP status of GET http://127.0.0.1:PORT/PATH, or 000 when nothing answers.
http_status() {
  local port=$1 path=$2
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port$path" || true
  else
    local line=""
    if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
      read -r -t 2 line <&3 || true
      exec 3>&-
    fi
    set -- $line
    echo "${2:-000}"
  fi
}

pid_of() {
  local file="$run/nats-$1.pid"
  if [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null; then
    cat "$file"
  fi
}

start() {
  local bin
  bin="$(find_server)"
  mkdir -p "$run"
  cd "$root" # store_dir in the configs is relative to the repository root
  for n in "${nodes[@]}"; do
    if [ -n "$(pid_of "$n")" ]; then
      echo "nats-$n already running (pid $(pid_of "$n"))"
      continue
    fi
    if [ "$(http_status "$(http_port "$n")" /varz)" != 000 ]; then
      echo "port $(http_port "$n") is already taken by another process; stop it first" >&2
      exit 1
    fi
    nohup "$bin" -c "nats/cluster/nats-$n.conf" -P "$run/nats-$n.pid" \
      >"$run/nats-$n.log" 2>&1 </dev/null &
    echo "nats-$n starting (pid $!, log $run/nats-$n.log)"
  done
  # /healthz answers 200 once JetStream is up and the node is current with the meta leader.
  local deadline=$((SECONDS + 60))
  for n in "${nodes[@]}"; do
    until [ "$(http_status "$(http_port "$n")" /healthz)" = 200 ]; do
      if [ $SECONDS -ge $deadline ]; then
        echo "nats-$n is not healthy after 60 s; see $run/nats-$n.log" >&2
        exit 1
      fi
      sleep 0.5
    done
  done
  echo "cluster ready:"
  echo "  NATS_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 NATS_STREAM_REPLICAS=3"
}

status() {
  for n in "${nodes[@]}"; do
    local pid
    pid="$(pid_of "$n")"
    echo "nats-$n pid=${pid:-none} client=127.0.0.1:$(client_port "$n") healthz=$(http_status "$(http_port "$n")" /healthz)"
  done
}

stop() {
  for n in "${nodes[@]}"; do
    local pid
    pid="$(pid_of "$n")"
    if [ -z "$pid" ]; then
      echo "nats-$n not running"
      continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "nats-$n (pid $pid) did not stop within 10 s" >&2
    else
      rm -f "$run/nats-$n.pid"
      echo "nats-$n stopped"
    fi
  done
}

case "${1:-start}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  clean)
    stop
    for n in "${nodes[@]}"; do rm -rf "$run/nats-$n"; done
    echo "deleted the JetStream data in $run"
    ;;
  *)
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2
    exit 2
    ;;
esac
