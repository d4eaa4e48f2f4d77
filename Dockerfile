# syntax=docker/dockerfile:1
#
# tv-ingress container image: a release build in the official Rust image, run as a non-root
# user in a distroless image (glibc + libgcc + CA certificates, no shell, no package manager).
#
#   docker build -t tv-ingress:local .
#   docker run --rm -p 8000:8000 -e WEBHOOK_SECRET -e NATS_URL=nats://nats:4222 tv-ingress:local
#
# No secret is baked into the image: WEBHOOK_SECRET (required, 32+ characters) and the NATS
# settings come from the environment at run time (see docs/deploy.md, docker-compose.yml).
# The stream definition nats/stream.json is compiled into the binary.

# Rust 1.89 is the floor of the locked dependencies (async-nats 0.51); 1.95 is what the project
# is built and tested with. Both images are Debian 12 (bookworm), so the glibc matches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the target directory between builds, so a
# source change recompiles only this crate. The binary is copied out of the cached target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin tv-ingress \
    && install -D -m 0755 target/release/tv-ingress /out/tv-ingress

# For production, pin this tag by digest (gcr.io/distroless/cc-debian12:nonroot@sha256:...).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tv-ingress /usr/local/bin/tv-ingress
ENV BIND_ADDR=0.0.0.0:8000 \
    LOG_LEVEL=INFO
# 65532 is the "nonroot" user of the distroless image.
USER 65532:65532
EXPOSE 8000
# SIGTERM: stop accepting, finish in-flight requests (SHUTDOWN_GRACE_SECONDS, default 10),
# drain NATS, exit 0. Give the container more than that before it is killed
# (docker stop -t 30, compose stop_grace_period: 30s).
STOPSIGNAL SIGTERM
# Liveness: GET /health on the local BIND_ADDR port. Exec form: distroless has no shell.
# (A load balancer should route on /ready instead: `tv-ingress healthcheck --ready`.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tv-ingress", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tv-ingress"]
CMD ["serve"]
