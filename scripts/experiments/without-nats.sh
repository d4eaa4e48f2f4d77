#!/usr/bin/env bash
# How much of the receiver's CPU per request is the NATS round trip, and how much the HTTP side?
# Builds the receiver with answer-without-publishing.patch (it answers 200 after the whole intake
# and publishes nothing) from HEAD in a throw-away worktree, then runs it as the suite's variant,
# interleaved with the shipping receiver and the minimal axum reference:
#
#   scripts/experiments/without-nats.sh                 # 5 runs of 5 s of each
#   scripts/experiments/without-nats.sh --repeat 3      # extra arguments go to the suite
#   SCENARIOS=nats-64,receiver-64,variant-64 scripts/experiments/without-nats.sh
#
# `variant-64` is the receiver without NATS. The experimental build never leaves target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$(mktemp -d)
cleanup() {
    git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
git worktree add --detach "$work/tree" HEAD >/dev/null
git -C "$work/tree" apply "$root/scripts/experiments/answer-without-publishing.patch"
# Its own target directory: cargo would take the patched build as up to date for the shipping
# one (the same package, older sources) if they shared one. The first run builds the
# dependencies there once.
CARGO_TARGET_DIR="$root/target/experiment" nice -n 5 cargo build --release --bin tv-ingress \
    --manifest-path "$work/tree/Cargo.toml"
nice -n 5 cargo build --release --bins
nice -n 5 target/release/tv-ingress-bench suite \
    --variant-bin "$root/target/experiment/release/tv-ingress" \
    --scenarios "${SCENARIOS:-receiver-64,variant-64,reference-64}" "$@"
