#!/usr/bin/env bash
# The benchmark in one command (README, "Performance"): builds the release binaries, then runs
# `tv-ingress-bench suite`, which starts a fresh nats-server (JetStream, file storage, temporary
# store), the receiver (`tv-ingress serve`, configured by environment) and the reference axum
# handlers as separate processes, runs every scenario 5 times interleaved and prints the markdown
# table with the targets. Extra arguments go to the suite, e.g.
#
#   scripts/bench.sh --duration 3 --repeat 3
#   scripts/bench.sh --scenarios nats-64,receiver-64,reference-64 --json /tmp/bench.json
#   scripts/bench.sh --variant-bin /tmp/tv-ingress.before     # A/B against another build
#   scripts/bench.sh --list
#
# It loads this machine for about ten minutes (2 cores shared by the load generator, the receiver
# and nats-server): compare the ratios of one run, not absolute figures across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
nice -n 5 cargo build --release --bins
exec nice -n 5 target/release/tv-ingress-bench suite "$@"
