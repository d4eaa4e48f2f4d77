#!/usr/bin/env bash
# Validates docker-compose.yml with docker-compose's own parser, when docker-compose is installed
# (Debian's docker-compose package; no Docker engine is needed for `config`). Otherwise it says it
# is skipped and exits 0: tests/compose.rs checks the file's coherence either way.
#
# WEBHOOK_SECRET is a dummy here: the compose file requires it through ${WEBHOOK_SECRET:?...},
# and `config -q` only interpolates it, nothing is started.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "compose-check: skipped (docker-compose is not installed)"
  exit 0
fi

dummy="compose-check-dummy-secret-not-used-0123456789"
# An empty --env-file: a developer's own .env must not change the outcome.
no_env="$(mktemp)"
trap 'rm -f "$no_env"' EXIT
WEBHOOK_SECRET="$dummy" docker-compose --env-file "$no_env" -f docker-compose.yml config -q
echo "compose-check: docker-compose.yml is valid ($(docker-compose version --short 2>/dev/null || echo docker-compose))"

# The secret must be required: without it, `config` must refuse.
if env -u WEBHOOK_SECRET docker-compose --env-file "$no_env" -f docker-compose.yml config -q >/dev/null 2>&1; then
  echo "compose-check: docker-compose.yml accepts a missing WEBHOOK_SECRET; it must be required" >&2
  exit 1
fi
echo "compose-check: WEBHOOK_SECRET is required"
