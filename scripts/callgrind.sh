#!/usr/bin/env bash
# Instructions per request of the receiver, noise-free: runs `tv-ingress serve` (release) under
# valgrind's callgrind against a fresh nats-server, zeroes the counters once it is ready, posts
# signed signals with tv-ingress-bench for a few seconds, dumps, and prints the instruction count
# per request and the top functions (inclusive). Counts user-space instructions only (not the
# kernel's work for syscalls), so it measures what code changes do regardless of machine load.
#
#   scripts/callgrind.sh [BIN] [CONNECTIONS] [SECONDS] [SCHEME]
#   scripts/callgrind.sh target/release/tv-ingress 16 10 hmac-body
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:-target/release/tv-ingress}")"
CONNS="${2:-16}"
SECONDS_="${3:-10}"
SCHEME="${4:-hmac-body}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install -y valgrind)" >&2; exit 2; }
[ -x target/release/tv-ingress-bench ] || nice -n 5 cargo build --release --bins
NATS_BIN="${NATS_SERVER_BIN:-$(./nats/provision-nats-server.sh)}"

WORK="$(mktemp -d /tmp/tv-ingress-callgrind.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT=$(free_port); HTTP_PORT=$(free_port)
"$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/js" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)

export WEBHOOK_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export WEBHOOK_TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export STANDARD_WEBHOOKS_SECRET="whsec_$(python3 -c 'import secrets,base64; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
export AUTH_SCHEMES=hmac-body,hmac-header,standard-webhooks,token
export NATS_URL="nats://127.0.0.1:$NATS_PORT" BIND_ADDR="127.0.0.1:$HTTP_PORT" LOG_LEVEL=INFO

OUT="$WORK/callgrind.out"
(cd "$WORK" && exec valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" serve >/dev/null 2>"$WORK/valgrind.log") &
VG=$!
PIDS+=($VG)
for _ in $(seq 1 300); do
  "$BIN" healthcheck --ready >/dev/null 2>&1 && break
  sleep 0.2
done
"$BIN" healthcheck --ready >/dev/null
callgrind_control -z "$VG" >/dev/null
RESULT=$(target/release/tv-ingress-bench http --addr "127.0.0.1:$HTTP_PORT" --scheme "$SCHEME" -c "$CONNS" -d "$SECONDS_")
callgrind_control -d "$VG" >/dev/null
sleep 1
echo "$RESULT"
REQUESTS=$(echo "$RESULT" | sed -n 's/.*statuses {\(.*\)}.*/\1/p' | tr ',' '\n' | awk -F: '{s+=$2} END {print s}')
DUMP=$(ls -t "$OUT".* 2>/dev/null | head -1)
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
echo "requests: $REQUESTS  instructions: $TOTAL  per request: $((TOTAL / REQUESTS))"
callgrind_annotate --inclusive=yes --threshold=100 "$DUMP" 2>/dev/null | sed -n '1,400p' > "$WORK/inclusive.txt"
callgrind_annotate --threshold=100 "$DUMP" 2>/dev/null > "$WORK/self.txt"
echo "annotations: $WORK/inclusive.txt $WORK/self.txt (dump $DUMP)"
